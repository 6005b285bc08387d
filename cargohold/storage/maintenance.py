"""One collector at a time across processes and nodes, and the record of what each run did.

The lock is `storage.exclusive.ExclusiveLock` (the one mechanism every periodic job uses): a
PostgreSQL advisory lock held on a connection for the whole run, or on SQLite an `flock` on a
file beside the database. Either is dropped the moment its holder dies, so a crashed collector
never blocks the next one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from cargohold.storage.database import Database
from cargohold.storage.exclusive import ExclusiveLock
from cargohold.storage.metadata import now_us
from cargohold.storage.schema_retention import maintenance_runs

RUNS_KEPT_US = 30 * 86_400 * 1_000_000


@dataclass
class JobLease:
    """A held job lock (`holder` names the run in `maintenance_runs`); `release` frees it."""

    name: str
    holder: str
    lock: ExclusiveLock

    def release(self) -> None:
        self.lock.release()


class MaintenanceStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def try_acquire(self, name: str) -> JobLease | None:
        """The job's lock if nobody else holds it, else None (never waits)."""
        lock = ExclusiveLock(self.database, name)
        if not lock.acquire():
            return None
        return JobLease(name, uuid.uuid4().hex, lock)

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



