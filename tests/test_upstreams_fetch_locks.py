"""The per-digest locks behind single flight of upstream fetches (`storage.fetch_locks`): one
holder per key across processes, on PostgreSQL (advisory lock) and SQLite (flock on a file
that the release removes), released when the holder dies."""

from __future__ import annotations

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
from cargohold.storage.fetch_locks import KeyLock

HOLDER = """
import sys, time
from cargohold.storage.database import Database
from cargohold.storage.fetch_locks import KeyLock
lock = KeyLock(Database(sys.argv[1]), "upstream-fetch:sha256:abc")
assert lock.try_acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql" and not os.environ.get("CI") and not postgres_available():
        pytest.skip("PostgreSQL not reachable")
    with database_url(request.param, tmp_path) as url:
        yield url


def lock_files(db_url: str) -> list[Path]:
    directory = Path(db_url.removeprefix("sqlite:///") + ".fetch-locks")
    return sorted(directory.iterdir()) if directory.is_dir() else []


def test_one_holder_per_key(db_url: str) -> None:
    node_a, node_b = Database(db_url), Database(db_url)
    try:
        first = KeyLock(node_a, "upstream-fetch:sha256:abc")
        second = KeyLock(node_b, "upstream-fetch:sha256:abc")
        other = KeyLock(node_b, "upstream-fetch:sha256:def")
        assert first.try_acquire()
        assert not second.try_acquire()
        assert other.try_acquire()  # per key
        with pytest.raises(RuntimeError):
            first.try_acquire()  # one lock object holds once
        first.release()
        assert second.try_acquire()
        second.release()
        other.release()
        if db_url.startswith("sqlite"):
            assert lock_files(db_url) == []  # released locks leave no files behind
    finally:
        node_a.dispose()
        node_b.dispose()


def test_the_lock_dies_with_its_holder(db_url: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, db_url], stdout=subprocess.PIPE)
    database = Database(db_url)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        lock = KeyLock(database, "upstream-fetch:sha256:abc")
        assert not lock.try_acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        deadline = time.monotonic() + 30
        while not lock.try_acquire():  # PostgreSQL notices the dead session within moments
            assert time.monotonic() < deadline, "the dead holder's lock was never released"
            time.sleep(0.1)
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        database.dispose()
