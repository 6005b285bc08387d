"""Run a background job on one node (and one worker) at a time: `run_exclusively`.

On PostgreSQL the job holds a session-level advisory lock on a connection of its own while it
runs; another node that tries meanwhile skips its turn. When the holder dies, PostgreSQL ends
its session and drops the lock, so the next node's periodic attempt takes over. On SQLite (one
machine) an exclusive `flock` on a file beside the database plays the same role for the worker
processes. Use it for every periodic job (upload purge, garbage collection, lifecycle):

    ran, result = await run_exclusively(storage.database, "gc", collect_garbage)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine

from cargohold.storage.database import Database
from cargohold.storage.sqlite_writer import sqlite_path

T = TypeVar("T")


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a job name."""
    return int.from_bytes(hashlib.sha256(b"cargohold-job:" + name.encode()).digest()[:8], "big",
                          signed=True)


def try_advisory_lock(engine: Engine, key: int) -> Connection | None:
    """PostgreSQL: a session advisory lock on a connection of `engine`, held until
    `release_advisory_lock`; None (no connection kept) when another session holds it."""
    conn = engine.connect()
    try:
        taken = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one()
        conn.commit()
    except BaseException:
        conn.close()
        raise
    if not taken:
        conn.close()
        return None
    return conn


def release_advisory_lock(conn: Connection, key: int) -> None:
    """Unlock and close; closing alone would drop the lock too, so a failed unlock is moot."""
    try:
        with contextlib.suppress(Exception):
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            conn.commit()
    finally:
        conn.close()


def sqlite_file(database: Database) -> str | None:
    """The SQLite database's file, beside which lock files go; None for a private in-memory
    database (one process: nobody to exclude)."""
    return sqlite_path(database.url)


class ExclusiveLock:
    """A non-blocking, cluster-wide lock named `name` (see the module docstring)."""

    def __init__(self, database: Database, name: str) -> None:
        self.database = database
        self.name = name
        self._held: Any = None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits."""
        if self._held is not None:
            raise RuntimeError(f"lock {self.name!r} is already held by this object")
        if self.database.engine.dialect.name == "postgresql":
            self._held = try_advisory_lock(self.database.engine, lock_key(self.name))
            return self._held is not None
        database_file = sqlite_file(self.database)
        if database_file is None:
            self._held = True
            return True
        path = Path(f"{database_file}.{hashlib.sha256(self.name.encode()).hexdigest()[:16]}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._held = fd
        return True

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None or held is True:
            return
        if isinstance(held, int):
            os.close(held)  # closing drops the flock
            return
        release_advisory_lock(held, lock_key(self.name))


async def run_exclusively(database: Database, name: str,
                          job: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
    """Run `job` unless another node or worker is running the job of that name right now.
    Returns (True, its result) when it ran, (False, None) when it was skipped."""
    lock = ExclusiveLock(database, name)
    if not await asyncio.to_thread(lock.acquire):
        return False, None
    try:
        return True, await job()
    finally:
        await asyncio.shield(asyncio.to_thread(lock.release))
