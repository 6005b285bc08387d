"""Per-key locks across worker processes and nodes: single flight of upstream blob fetches.

Like `storage.exclusive` (whose advisory-lock keys it shares: keys here are named
`upstream-fetch:<digest>`, apart from the job names), with two differences that per-digest
locks need: the SQLite lock files are removed on release (one per digest would pile up), and
the PostgreSQL lock is held on a connection outside the pool.

The holder of `KeyLock(database, key)` does the work; everyone else polls `try_acquire` and,
once it succeeds, finds the work done (or does it, if the holder failed). The lock dies with
its holder, so a killed worker never leaves a digest locked:

- PostgreSQL: a session advisory lock on a connection of the lock's own (not the shared pool:
  a transfer can hold it for minutes, and the pool must stay free for the transfer's own
  queries). A waiter first asks `pg_locks` through the pool, so polling opens no connections.
- SQLite (one machine): an exclusive `flock` on a per-key file in a directory beside the
  database. The holder removes the file on release; a waiter that locked a file which was
  removed meanwhile notices (the path's inode changed) and tries again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from cargohold.storage.database import Database
from cargohold.storage.exclusive import (
    lock_key,
    release_advisory_lock,
    sqlite_file,
    try_advisory_lock,
)

_LOCK_ENGINES: dict[str, Engine] = {}


class KeyLock:
    """A non-blocking lock on `key`, shared by every process using the same database."""

    def __init__(self, database: Database, key: str) -> None:
        self.database = database
        self.key = key
        self._held: Any = None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits. Call from a thread."""
        if self._held is not None:
            raise RuntimeError(f"lock {self.key!r} is already held by this object")
        if self.database.engine.dialect.name == "postgresql":
            return self._try_advisory()
        database_file = sqlite_file(self.database)
        if database_file is None:
            self._held = True
            return True
        return self._try_flock(Path(f"{database_file}.fetch-locks"))

    def _try_advisory(self) -> bool:
        number = lock_key(self.key)
        classid, objid = (number >> 32) & 0xFFFFFFFF, number & 0xFFFFFFFF
        with self.database.engine.connect() as conn:
            held = conn.execute(text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND "
                "database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid = :classid AND objid = :objid AND objsubid = 1 AND granted)"),
                {"classid": classid, "objid": objid}).scalar_one()
        if held:
            return False
        engine = _LOCK_ENGINES.get(self.database.url)
        if engine is None:
            engine = create_engine(self.database.url, poolclass=NullPool)
            _LOCK_ENGINES[self.database.url] = engine
        self._held = try_advisory_lock(engine, number)
        return self._held is not None

    def _try_flock(self, directory: Path) -> bool:
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / hashlib.sha256(self.key.encode()).hexdigest()[:32]
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise FileNotFoundError(path)  # released and removed meanwhile: not ours
        except OSError:
            os.close(fd)
            return False
        self._held = (fd, path)
        return True

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None or held is True:
            return
        if isinstance(held, tuple):
            fd, path = held
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # before the unlock: a waiter then sees a new inode
            os.close(fd)
            return
        release_advisory_lock(held, lock_key(self.key))
