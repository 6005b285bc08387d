"""Group commit on SQLite (services/group_commit.py, Database.batch, storage/sqlite_writer.py),
against a real database file: concurrent writes share transactions, a failing unit changes
nothing and fails alone, and writers in several processes all land while taking turns."""

from __future__ import annotations

import asyncio
import fcntl
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, func, insert, select

from cargohold.services.group_commit import LOOP_ATTEMPTS, GroupCommit
from cargohold.storage.database import Database, WouldBlock
from cargohold.storage.schema import repositories
from cargohold.storage.sql import Prepared, Tx

INSERT = Prepared(insert(repositories).values(name=bindparam("name"), created_at=1))


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'metadata.db'}")
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()


def names(db: Database) -> set[str]:
    with db.read() as conn:
        return set(conn.execute(select(repositories.c.name)).scalars())


def add(db: Database, name: str) -> int:
    def unit(tx: Tx) -> int:
        tx.execute(INSERT, {"name": name})
        return len(name)
    return db.transaction(unit)


def add_then_fail(db: Database, name: str) -> None:
    def unit(tx: Tx) -> None:
        tx.execute(INSERT, {"name": name})
        raise ValueError("refused after writing")
    db.transaction(unit)


def needs_connection(db: Database) -> None:
    with db.write():
        pass


def test_concurrent_units_share_a_commit_and_fail_alone(database: Database) -> None:
    batches: list[int] = []
    original = database.batch

    def counting(calls, *, on_loop):  # type: ignore[no-untyped-def]
        batches.append(len(calls))
        return original(calls, on_loop=on_loop)

    database.batch = counting  # type: ignore[method-assign]

    async def main() -> list[object]:
        group = GroupCommit(database, ThreadPoolExecutor(2))
        futures = [group.submit(lambda i=i: add(database, f"repo-{i:02d}")) for i in range(10)]
        futures.insert(3, group.submit(lambda: add_then_fail(database, "half-written")))
        futures.insert(5, group.submit(lambda: needs_connection(database)))
        return await asyncio.gather(*futures, return_exceptions=True)

    results = asyncio.run(main())
    assert batches == [12]  # submitted in one loop turn: one transaction
    assert isinstance(results[3], ValueError)
    assert isinstance(results[5], WouldBlock)  # the caller runs it alone, on a thread
    assert [r for i, r in enumerate(results) if i not in (3, 5)] == [7] * 10
    assert names(database) == {f"repo-{i:02d}" for i in range(10)}  # no "half-written"


def test_a_failing_unit_alone_in_its_batch_changes_nothing(database: Database) -> None:
    async def main() -> list[object]:
        group = GroupCommit(database, ThreadPoolExecutor(2))
        alone = await asyncio.gather(group.submit(lambda: add_then_fail(database, "half")),
                                     return_exceptions=True)
        after = await group.submit(lambda: add(database, "after"))
        return [*alone, after]

    failed, after = asyncio.run(main())
    assert isinstance(failed, ValueError)
    assert after == 5
    assert names(database) == {"after"}


def test_no_unit_runs_twice_when_another_in_its_batch_fails(database: Database) -> None:
    runs: list[str] = []

    def counted(name: str) -> int:
        runs.append(name)  # a side effect outside the database, as the outbox's counter
        return add(database, name)

    async def main() -> list[object]:
        group = GroupCommit(database, ThreadPoolExecutor(2))
        futures = [group.submit(lambda: counted("first")),
                   group.submit(lambda: add_then_fail(database, "failing")),
                   group.submit(lambda: counted("third"))]
        return await asyncio.gather(*futures, return_exceptions=True)

    first, failed, third = asyncio.run(main())
    assert (first, third) == (5, 5) and isinstance(failed, ValueError)
    assert runs == ["first", "third"]
    assert names(database) == {"first", "third"}


def test_a_batch_waits_on_a_thread_while_another_process_writes(database: Database,
                                                                 tmp_path: Path) -> None:
    holder, release = hold_writer_lock(tmp_path)

    async def main() -> list[int]:
        group = GroupCommit(database, ThreadPoolExecutor(2))
        futures = [group.submit(lambda i=i: add(database, f"r{i}")) for i in range(5)]
        await asyncio.sleep(0.3)
        assert not any(f.done() for f in futures)  # waiting for the other process
        assert names(database) == set()
        release.set()
        return await asyncio.gather(*futures)

    assert asyncio.run(main()) == [2] * 5
    holder.join(10)
    assert names(database) == {f"r{i}" for i in range(5)}


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(2)
        self.submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(*args, **kwargs)


def test_a_lock_freed_within_the_timed_attempts_costs_no_thread(database: Database,
                                                                tmp_path: Path) -> None:
    """Another process's hold usually ends within microseconds: the batch keeps trying on
    the loop, a millisecond apart, before it pays for a thread."""
    holder, release = hold_writer_lock(tmp_path)
    executor = CountingExecutor()

    async def main() -> list[int]:
        group = GroupCommit(database, executor)
        futures = [group.submit(lambda i=i: add(database, f"r{i}")) for i in range(3)]
        for _ in range(10_000):
            if group._attempts >= LOOP_ATTEMPTS:  # the quick tries are spent: timed ones now
                break
            await asyncio.sleep(0)
        else:
            pytest.fail("the batch never reached its timed tries")
        release.set()
        holder.join(10)  # the lock is free again before the next timed try
        return await asyncio.gather(*futures)

    assert asyncio.run(main()) == [2] * 3
    assert executor.submitted == 0
    assert names(database) == {"r0", "r1", "r2"}


def hold_writer_lock(tmp_path: Path) -> tuple[Any, Any]:
    """Another process holding the database's writer lock, and the event that ends it."""
    lock_file = f"{tmp_path / 'metadata.db'}-writer.lock"
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(lock_file, ready, release))
    holder.start()
    assert ready.wait(10)
    return holder, release


def _hold_lock(path: str, ready: Any, release: Any) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    ready.set()
    release.wait(30)


def _writer(url: str, prefix: str, count: int) -> None:
    db = Database(url)

    async def main() -> None:
        group = GroupCommit(db, ThreadPoolExecutor(4))
        for start in range(0, count, 16):
            await asyncio.gather(*(group.submit(lambda i=i: add(db, f"{prefix}-{i}"))
                                   for i in range(start, min(count, start + 16))))

    asyncio.run(main())
    db.dispose()


def test_writers_in_several_processes_all_land(database: Database) -> None:
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(database.url, f"p{n}", 300))
               for n in range(3)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
        assert process.exitcode == 0
    with database.read() as conn:
        assert conn.execute(select(func.count()).select_from(repositories)).scalar_one() == 900
