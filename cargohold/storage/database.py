"""The SQL database behind every store: engine set-up, transactions and schema migrations.

Runs unchanged on SQLite (the embedded default) and PostgreSQL; nothing above this module is
engine-specific. The only dialect-dependent pieces are connection set-up and the upsert
construct (`insert(...).on_conflict_do_*`), which both engines support.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).with_name("migrations")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin() emit BEGIN itself, so writers can take the lock up front.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front (no deadlocking lock upgrades). Readers run in
        # autocommit: each read is one statement, atomic on its own under WAL.
        if conn.info.get("write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One SQLAlchemy engine, with read and write transactions."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self.url = url
        if url.startswith("sqlite"):
            self.engine = create_engine(url, connect_args={"check_same_thread": False},
                                        pool_size=pool_size, max_overflow=pool_size)
            _configure_sqlite(self.engine)
        elif url.startswith("postgresql"):
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size,
                                        pool_pre_ping=True)
        else:
            raise ValueError(f"unsupported database URL {url!r} (use sqlite:/// or postgresql://)")
        is_postgres = self.engine.dialect.name == "postgresql"
        self._write_lock: AbstractContextManager[object] = (
            nullcontext() if is_postgres else threading.Lock())
        self.insert: Callable[[Table], Any] = postgresql.insert if is_postgres else sqlite.insert

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent; safe at every start)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        engine = self.engine
        if engine.dialect.name == "sqlite":
            # A separate engine without the BEGIN hook: alembic manages its own transactions.
            engine = create_engine(self.url, poolclass=NullPool)
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several nodes may start at once: one migrates, the others wait.
                conn.execute(text("SELECT pg_advisory_xact_lock(7283910)"))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        if engine is not self.engine:
            engine.dispose()

    def dispose(self) -> None:
        self.engine.dispose()

    def check(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        # SQLite has one writer at a time: queue this process's writers on a lock rather than
        # in SQLite's busy handler, whose back-off sleeps would stall every writer.
        with self._write_lock, self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("write", None)
