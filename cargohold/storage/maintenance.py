"""One collector at a time across processes and nodes, and the record of what each run did.

PostgreSQL: a session-level advisory lock on a connection held for the whole run; it is
released by the server if the node dies. SQLite (one host): a lease row with an expiry,
renewed while the run progresses, so a crashed collector blocks others only until it expires.
"""

from __future__ import annotations

import json
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select, text, update

from cargohold.storage.database import Database
from cargohold.storage.metadata import now_us
from cargohold.storage.schema_retention import maintenance_locks, maintenance_runs

LEASE_SECONDS = 600
RUNS_KEPT_US = 30 * 86_400 * 1_000_000


@dataclass
class JobLease:
    """A held job lock; `renew` keeps a SQLite lease alive, `release` frees it."""

    name: str
    holder: str
    database: Database
    connection: Connection | None = None
    released: bool = field(default=False)

    def renew(self) -> None:
        if self.connection is not None or self.released:
            return
        with self.database.write() as conn:
            conn.execute(update(maintenance_locks).where(
                maintenance_locks.c.name == self.name, maintenance_locks.c.holder == self.holder,
            ).values(expires_at=now_us() + LEASE_SECONDS * 1_000_000))

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.connection is not None:
            try:
                self.connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                        {"key": _lock_key(self.name)})
                self.connection.commit()
            finally:
                self.connection.close()
            return
        with self.database.write() as conn:
            conn.execute(delete(maintenance_locks).where(
                maintenance_locks.c.name == self.name, maintenance_locks.c.holder == self.holder))


def _lock_key(name: str) -> int:
    # A stable 31-bit key per job, away from the migration lock's key.
    return 0x43480000 + zlib.crc32(name.encode()) % 0xFFFF


class MaintenanceStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.is_postgres = database.engine.dialect.name == "postgresql"

    def try_acquire(self, name: str) -> JobLease | None:
        """The job's lock if nobody else holds it, else None (never waits)."""
        holder = uuid.uuid4().hex
        if self.is_postgres:
            conn = self.database.engine.connect()
            try:
                got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                   {"key": _lock_key(name)}).scalar_one()
                conn.commit()
            except BaseException:
                conn.close()
                raise
            if not got:
                conn.close()
                return None
            return JobLease(name, holder, self.database, conn)
        now = now_us()
        with self.database.write() as conn:
            conn.execute(delete(maintenance_locks).where(
                maintenance_locks.c.name == name, maintenance_locks.c.expires_at < now))
            taken = conn.execute(select(maintenance_locks.c.holder).where(
                maintenance_locks.c.name == name)).scalar_one_or_none()
            if taken is not None:
                return None
            conn.execute(insert(maintenance_locks).values(
                name=name, holder=holder, expires_at=now + LEASE_SECONDS * 1_000_000))
        return JobLease(name, holder, self.database)

    def record_run(self, job: str, holder: str, started_at: int, dry_run: bool,
                   report: dict[str, Any]) -> None:
        """Keep the report of a run; reports older than 30 days are dropped."""
        with self.database.write() as conn:
            conn.execute(delete(maintenance_runs).where(
                maintenance_runs.c.started_at < now_us() - RUNS_KEPT_US))
            conn.execute(insert(maintenance_runs).values(
                job=job, holder=holder, started_at=started_at, finished_at=now_us(),
                dry_run=int(dry_run), report=json.dumps(report, sort_keys=True)))

    def runs(self, job: str, limit: int = 100) -> list[dict[str, Any]]:
        with self.database.read() as conn:
            rows = conn.execute(select(maintenance_runs).where(maintenance_runs.c.job == job)
                                .order_by(maintenance_runs.c.started_at.desc())
                                .limit(limit)).all()
        return [{"holder": r.holder, "started_at": r.started_at, "finished_at": r.finished_at,
                 "dry_run": bool(r.dry_run), "report": json.loads(r.report)} for r in rows]



