"""The SQL database behind every store: engine set-up, transactions and schema migrations.

Runs unchanged on SQLite (the embedded default) and PostgreSQL; nothing above this module is
engine-specific. The only dialect-dependent pieces are connection set-up and the upsert
construct (`insert(...).on_conflict_do_*`), which both engines support.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from cargohold.storage.sql import (
    NeedsConnection,
    Prepared,
    Tx,
    raw_read,
    raw_transaction,
    tx_of,
)
from cargohold.storage.sqlite_writer import WriterLock

MIGRATIONS = Path(__file__).with_name("migrations")
T = TypeVar("T")
# SQLite writers take the write lock up front (no deadlocking lock upgrades).
BEGIN_IMMEDIATE = Prepared(text("BEGIN IMMEDIATE"))
# Set while a read runs on the event loop's own thread (`Database.inline_read`).
_READ_ON_LOOP: ContextVar[bool] = ContextVar("cargohold_read_on_loop", default=False)


class WouldBlock(Exception):
    """A write tried on the event loop (`Database.batch`) would have to wait, or needs more
    than the fast path: run it on a thread instead."""


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
        # SQLite: one writer at a time across threads and processes (sqlite_writer.py).
        self._writer = None if is_postgres else WriterLock(url)
        self._write_lock: AbstractContextManager[object] = self._writer or nullcontext()
        self.insert: Callable[[Table], Any] = postgresql.insert if is_postgres else sqlite.insert
        self._begin = None if is_postgres else BEGIN_IMMEDIATE
        self.sqlite = not is_postgres
        self._loop_connection: Any = None  # SQLite: the connection of writes on the loop
        self._loop_reader: Any = None  # SQLite: the connection of reads on the loop
        self._batching = threading.local()  # .tx: the open transaction of `batch`, if any

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent; safe at every start)."""
        # Imported here: alembic and mako (~10 MiB) stay out of the processes that only serve.
        from alembic import command
        from alembic.config import Config

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
        for held in (self._loop_connection, self._loop_reader):
            if held is not None:
                held.close()
        self._loop_connection = self._loop_reader = None
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
        if self._batch_tx() is not None:
            raise WouldBlock
        # SQLite has one writer at a time: queue writers on a lock rather than in SQLite's
        # busy handler, whose back-off sleeps would stall every writer.
        with self._write_lock, self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("write", None)

    def transaction(self, unit: Callable[[Tx], T]) -> T:
        """Run `unit` in one write transaction on the fast path (sql.py); if it needs a full
        SQLAlchemy Connection (`Tx.sa`), it is rolled back and run again in `write()`. So
        `unit` must do nothing outside the database before it could ask for one."""
        batch = self._batch_tx()
        if batch is not None:
            return unit(batch)  # inside `batch`: its savepoint makes this unit atomic
        try:
            with self._write_lock, raw_transaction(self.engine, self._begin) as tx:
                return unit(tx)
        except NeedsConnection:
            pass
        with self.write() as conn:
            return unit(tx_of(conn))

    @contextmanager
    def fast_read(self) -> Iterator[Tx]:
        """A read on the fast path: `Prepared` statements only. On the event loop (see
        `inline_read`) it uses the loop's own connection: no pool check-out and check-in."""
        if _READ_ON_LOOP.get():
            yield Tx(self._loop_read_dbapi(), self.engine.dialect)
            return
        with raw_read(self.engine) as tx:
            yield tx

    def loop_data_version(self) -> int | None:
        """SQLite's data version on the loop's read connection, during a read on the loop
        (`inline_read`); None elsewhere. It changes after any other connection commits."""
        if not _READ_ON_LOOP.get():
            return None
        return int(self._loop_read_dbapi().execute("PRAGMA data_version").fetchone()[0])

    def _loop_read_dbapi(self) -> Any:
        if self._loop_reader is None:
            self._loop_reader = self.engine.raw_connection()  # held for the process's life
        return self._loop_reader.dbapi_connection

    def inline_read(self, call: Callable[[], T]) -> T:
        """Run `call` (a store read) right here, on the event loop: SQLite only, where a WAL
        reader never waits for a writer (the caller checks `sqlite`)."""
        token = _READ_ON_LOOP.set(True)
        try:
            return call()
        finally:
            _READ_ON_LOOP.reset(token)

    def _batch_tx(self) -> Tx | None:
        return getattr(self._batching, "tx", None)

    def _loop_dbapi(self) -> Any:
        if self._loop_connection is None:
            # Held for the process's life; set up by the pool like the others.
            self._loop_connection = self.engine.raw_connection()
            self._loop_connection.dbapi_connection.execute("PRAGMA busy_timeout=0")
        return self._loop_connection.dbapi_connection

    def batch(self, calls: Sequence[Callable[[], Any]], *, on_loop: bool) -> list[Any]:
        """Group commit (SQLite): run `calls`, store methods making one write transaction
        each, in one transaction and one lock hand-over. Returns each call's result, or the
        exception that undid it (`WouldBlock` for one that needs more than the fast path: run
        it alone). On the event loop (`on_loop`) it raises WouldBlock, having run nothing, when
        it would wait.

        Each unit runs in a savepoint of its own, so that a failing one changes nothing and
        fails alone, and no unit runs twice (a unit may count what it records, as the event
        outbox does). A batch of one unit needs no savepoint: if it fails, the transaction
        is rolled back (two statements fewer for the many batches of one).
        """
        writer = self._writer
        assert writer is not None, "group commit is SQLite's"
        if not writer.acquire(blocking=not on_loop):
            raise WouldBlock
        held = None
        try:
            if on_loop:
                conn = self._loop_dbapi()
            else:
                held = self.engine.raw_connection()
                conn = held.dbapi_connection
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                if on_loop:
                    raise WouldBlock from None  # a writer that doesn't take our lock
                raise
            self._batching.tx = Tx(conn, self.engine.dialect)
            try:
                if len(calls) == 1:
                    try:
                        results = [calls[0]()]
                    except Exception as exc:  # nothing else in the batch: keep nothing
                        conn.rollback()
                        return [_outcome(exc)]
                else:
                    results = _run_units(conn, calls)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                self._batching.tx = None
            return results
        finally:
            if held is not None:
                held.close()
            writer.release()


def _run_units(conn: Any, calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Each call's result, or the error whose savepoint was rolled back."""
    results: list[Any] = []
    for call in calls:
        conn.execute("SAVEPOINT unit")
        try:
            results.append(call())
        except Exception as exc:
            conn.execute("ROLLBACK TO unit")
            results.append(_outcome(exc))
        conn.execute("RELEASE unit")
    return results


def _outcome(exc: Exception) -> Exception:
    """What a failed unit's caller gets: WouldBlock when it must run alone, on the full path
    or after a busy database, else its own error."""
    return WouldBlock() if isinstance(exc, NeedsConnection) or _busy(getattr(exc, "orig", exc)
                                                                     ) else exc


def _busy(error: BaseException | None) -> bool:
    return isinstance(error, sqlite3.OperationalError) and (
        "locked" in str(error) or "busy" in str(error))
