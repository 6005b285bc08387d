"""Background jobs run on one node at a time (`run_exclusively`), and another node takes over
when the holder dies: on PostgreSQL (advisory lock) and SQLite (flock)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbfixtures import database_url, postgres_available

from cargohold.storage.database import Database
from cargohold.storage.exclusive import ExclusiveLock, run_exclusively

HOLDER = """
import sys, time
from cargohold.storage.database import Database
from cargohold.storage.exclusive import ExclusiveLock
lock = ExclusiveLock(Database(sys.argv[1]), "job")
assert lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql" and not os.environ.get("CI") and not postgres_available():
        pytest.skip("PostgreSQL not reachable")
    with database_url(request.param, tmp_path) as url:
        yield url


def test_one_holder_at_a_time(db_url: str) -> None:
    node_a, node_b = Database(db_url), Database(db_url)
    try:
        first, second = ExclusiveLock(node_a, "job"), ExclusiveLock(node_b, "job")
        other_job = ExclusiveLock(node_b, "another-job")
        assert first.acquire()
        assert not second.acquire()
        assert other_job.acquire()  # locks are per job name
        first.release()
        assert second.acquire()
        second.release()
        other_job.release()
    finally:
        node_a.dispose()
        node_b.dispose()


def test_run_exclusively_skips_while_another_runs(db_url: str) -> None:
    node_a, node_b = Database(db_url), Database(db_url)

    async def scenario() -> None:
        started, finish = asyncio.Event(), asyncio.Event()

        async def slow() -> str:
            started.set()
            await finish.wait()
            return "done"

        running = asyncio.create_task(run_exclusively(node_a, "purge", slow))
        await started.wait()
        assert await run_exclusively(node_b, "purge", slow) == (False, None)
        finish.set()
        assert await running == (True, "done")
        finish.set()
        assert await run_exclusively(node_b, "purge", slow) == (True, "done")

    try:
        asyncio.run(scenario())
    finally:
        node_a.dispose()
        node_b.dispose()


def test_another_node_takes_over_when_the_holder_dies(db_url: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, db_url], stdout=subprocess.PIPE)
    database = Database(db_url)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        lock = ExclusiveLock(database, "job")
        assert not lock.acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        deadline = time.monotonic() + 30
        while not lock.acquire():  # PostgreSQL notices the dead session within moments
            assert time.monotonic() < deadline, "the dead holder's lock was never released"
            time.sleep(0.1)
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        database.dispose()
