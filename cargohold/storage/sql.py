"""The hot paths' way to SQL: statements compiled once per dialect, run on the DBAPI cursor,
in transactions that skip SQLAlchemy's per-connection machinery.

Measured on SQLite (bench/PROFILE.md): a one-row statement costs about 5 µs on the cursor,
25 µs through `Connection.execute` when built once, 100 µs when built per call; a write
transaction's set-up and commit cost about 20 µs here and 75 µs through `Database.write`. The
statements are still SQLAlchemy Core, compiled by each engine's own dialect, so the same code
runs on SQLite and PostgreSQL. What a hot path needs only rarely (creating a repository with
its creation template, say) it does with a full SQLAlchemy `Connection`: `Tx.sa` asks for one,
and `Database.transaction` then runs the whole unit again inside `Database.write`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect, Engine

Builder = Callable[[Callable[..., Any]], ClauseElement]


class NeedsConnection(Exception):
    """Raised by `Tx.sa` in a fast transaction: the unit must run on a full Connection."""


class Prepared:
    """A fixed statement, compiled once per dialect. Parameters are passed by bind name.

    `statement` is a Core statement, or a function of the dialect's `insert` (for upserts,
    whose `on_conflict_*` construct is dialect-specific; called once per dialect). Literal
    values in the statement are compiled in as defaults: `values(status="pending")` needs no
    parameter. Only fixed statements: no expanding `IN` lists, no Python-side column defaults
    (neither is applied here)."""

    __slots__ = ("_build", "_compiled")

    def __init__(self, statement: ClauseElement | Builder) -> None:
        self._build = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}

    def compiled(self, dialect: Dialect) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        entry = self._compiled.get(dialect.name)
        if entry is None:
            statement = self._build if isinstance(self._build, ClauseElement) else self._build(
                postgresql.insert if dialect.name == "postgresql" else sqlite.insert)
            compiled = statement.compile(dialect=dialect)
            defaults = {name: bind.value for bind, name in compiled.bind_names.items()
                        if not bind.required and bind.callable is None}
            positional = tuple(compiled.positiontup) if compiled.positional else None
            entry = (str(compiled), positional, defaults)
            self._compiled[dialect.name] = entry
        return entry


class Tx:
    """One transaction's DBAPI cursor, with an SQLAlchemy `Connection` for the rare statement
    that is not `Prepared` (only in a full transaction: see `sa`)."""

    __slots__ = ("_cursor", "_dialect", "_sa")

    def __init__(self, dbapi_connection: Any, dialect: Dialect,
                 sa: Connection | None = None) -> None:
        self._cursor = dbapi_connection.cursor()
        self._dialect = dialect
        self._sa = sa

    @property
    def sa(self) -> Connection:
        if self._sa is None:
            raise NeedsConnection
        return self._sa

    def execute(self, prepared: Prepared, params: dict[str, Any] | None = None) -> Any:
        """Run a statement; the cursor, for its rows or rowcount."""
        sql, values = self._bound(prepared, params or {})
        self._run(self._cursor.execute, sql, values)
        return self._cursor

    def one(self, prepared: Prepared, params: dict[str, Any] | None = None) -> Any:
        """The first row (a tuple), or None. Reads every row: a statement left unfinished
        (a DELETE … RETURNING, say) would hold SQLite's commit up."""
        rows = self.execute(prepared, params).fetchall()
        return rows[0] if rows else None

    def scalar(self, prepared: Prepared, params: dict[str, Any] | None = None) -> Any:
        """The first column of the first row, or None."""
        row = self.one(prepared, params)
        return None if row is None else row[0]

    def rowcount(self, prepared: Prepared, params: dict[str, Any] | None = None) -> int:
        return int(self.execute(prepared, params).rowcount)

    def many(self, prepared: Prepared, rows: Sequence[dict[str, Any]]) -> None:
        """Run a statement once per row, in one driver call (`executemany`)."""
        if not rows:
            return
        bound = [self._bound(prepared, row) for row in rows]
        self._run(self._cursor.executemany, bound[0][0], [values for _, values in bound])

    def _bound(self, prepared: Prepared, params: dict[str, Any]) -> tuple[str, Any]:
        """The statement's SQL and its parameters in the driver's form (a tuple for positional
        paramstyles), the statement's literal defaults filling what `params` leaves out."""
        sql, positional, defaults = prepared.compiled(self._dialect)
        if positional is not None:
            return sql, tuple(params[name] if name in params else defaults[name]
                              for name in positional)
        return sql, {**defaults, **params} if params else defaults

    def _run(self, call: Callable[[str, Any], Any], sql: str, values: Any) -> None:
        try:
            call(sql, values)
        except self._dialect.loaded_dbapi.Error as exc:
            # As SQLAlchemy would raise it (IntegrityError: the caller's retry loop knows it).
            raise DBAPIError.instance(sql, values, exc, self._dialect.loaded_dbapi.Error,
                                      dialect=self._dialect) from exc


def tx_of(conn: Connection | Tx) -> Tx:
    """A Tx over an SQLAlchemy Connection's transaction (for code called from both kinds)."""
    if isinstance(conn, Tx):
        return conn
    return Tx(conn.connection.dbapi_connection, conn.dialect, conn)


@contextmanager
def raw_transaction(engine: Engine, begin: Prepared | None) -> Iterator[Tx]:
    """A transaction straight on a pooled DBAPI connection. `begin`: the statement that opens
    it (SQLite's `BEGIN IMMEDIATE`), None where the driver opens one itself (psycopg)."""
    fairy = engine.raw_connection()
    try:
        tx = Tx(fairy.dbapi_connection, engine.dialect)
        if begin is not None:
            tx.execute(begin)
        try:
            yield tx
        except BaseException:
            fairy.rollback()
            raise
        fairy.commit()
    finally:
        fairy.close()  # back to the pool (which rolls back anything left open)


@contextmanager
def raw_read(engine: Engine) -> Iterator[Tx]:
    """A read on a pooled DBAPI connection (SQLite: autocommit; PostgreSQL: the pool's
    reset-on-return ends the implicit transaction)."""
    fairy = engine.raw_connection()
    try:
        yield Tx(fairy.dbapi_connection, engine.dialect)
    finally:
        fairy.close()
