"""Replication backfills: the images a rule's repositories held before it, queued as outbox
deliveries to one destination in one transaction, with their progress read back from the
deliveries."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from cargohold.storage.database import Database
from cargohold.storage.metadata import now_us
from cargohold.storage.replication import CONSUMER_PREFIX
from cargohold.storage.schema import manifests, repositories, tags
from cargohold.storage.schema_events import outbox_deliveries as deliveries
from cargohold.storage.schema_events import outbox_events as events
from cargohold.storage.schema_upstreams import replication_backfill_items as items
from cargohold.storage.schema_upstreams import replication_backfills as backfills

TOPIC = "backfill"


class BackfillInProgress(Exception):
    """The destination has a backfill that is still running."""


@dataclass(frozen=True, slots=True)
class Backfill:
    id: str
    registry_id: str
    region: str
    stopped: bool
    started_at: int
    total: int
    completed: int
    failed: int
    pending: int
    failure_codes: list[str]
    ended_at: int | None

    @property
    def status(self) -> str:
        if self.stopped:
            return "STOPPED"
        if self.pending:
            return "IN_PROGRESS"
        return "FAILED" if self.failed else "COMPLETE"


@dataclass(frozen=True, slots=True)
class BackfillResult:
    repository: str
    digest: str
    tag: str | None
    status: str  # COMPLETE or FAILED
    failure: str | None


def _settled(status: str, last_error: str | None) -> str | None:
    if status == "delivered":
        return "COMPLETE"
    if status in ("dropped", "expired") or last_error:
        return "FAILED"
    return None


class BackfillStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def start(self, registry_id: str, region: str,
              wanted: Callable[[str], bool]) -> Backfill:
        """Queue every manifest and tag of the repositories `wanted` accepts."""
        now = now_us()
        consumer = CONSUMER_PREFIX + registry_id
        backfill_id = str(uuid.uuid4())
        with self.database.write() as conn:
            for other in conn.execute(select(backfills.c.id).where(
                    backfills.c.registry_id == registry_id, ~backfills.c.stopped)).scalars():
                if self._summary(conn, other).status == "IN_PROGRESS":
                    raise BackfillInProgress(other)
            conn.execute(insert(backfills).values(id=backfill_id, registry_id=registry_id,
                                                  region=region, stopped=False,
                                                  started_at=now))
            rows = conn.execute(
                select(repositories.c.name, manifests.c.digest, manifests.c.media_type,
                       manifests.c.size, manifests.c.id)
                .join(manifests, manifests.c.repository_id == repositories.c.id)
                .order_by(repositories.c.name, manifests.c.id)).all()
            tag_rows = conn.execute(
                select(repositories.c.name, tags.c.name.label("tag"), manifests.c.digest,
                       manifests.c.media_type, manifests.c.size)
                .join(tags, tags.c.repository_id == repositories.c.id)
                .join(manifests, manifests.c.id == tags.c.manifest_id)
                .order_by(repositories.c.name, tags.c.name)).all()
            work = [("push", r.name, r.digest, r.media_type, r.size, None) for r in rows]
            work += [("tag", r.name, r.digest, r.media_type, r.size, r.tag) for r in tag_rows]
            for action, repository, digest, media_type, size, tag in work:
                if not wanted(repository):
                    continue
                event_id = str(uuid.uuid4())
                payload = {"action": action, "repository": repository, "digest": digest,
                           "media_type": media_type, "size": size, "tag": tag,
                           "id": event_id, "at": now, "backfill": backfill_id}
                row = conn.execute(insert(events).values(
                    event_id=event_id, topic=TOPIC, action=action, repository=repository,
                    digest=digest, tag=tag, media_type=media_type,
                    payload=json.dumps(payload), created_at=now).returning(events.c.id)
                ).scalar_one()
                conn.execute(insert(deliveries).values(
                    event_row=row, consumer=consumer, status="pending", attempts=0,
                    next_attempt_at=now, updated_at=now))
                conn.execute(insert(items).values(backfill_id=backfill_id, event_row=row))
            return self._summary(conn, backfill_id)

    def _summary(self, conn: Connection, backfill_id: str) -> Backfill:
        head = conn.execute(select(backfills).where(backfills.c.id == backfill_id)).one()
        consumer = CONSUMER_PREFIX + head.registry_id
        total = completed = failed = pending = 0
        codes: list[str] = []
        ended = head.started_at
        for row in conn.execute(
                select(deliveries.c.status, deliveries.c.last_error, deliveries.c.updated_at)
                .join(items, items.c.event_row == deliveries.c.event_row)
                .where(items.c.backfill_id == backfill_id, deliveries.c.consumer == consumer)):
            total += 1
            ended = max(ended, row.updated_at)
            outcome = _settled(row.status, row.last_error)
            if outcome == "COMPLETE":
                completed += 1
            elif outcome == "FAILED":
                failed += 1
                if row.last_error and row.last_error[:100] not in codes:
                    codes.append(row.last_error[:100])
            if row.status == "pending":
                pending += 1
        done = head.stopped or not pending
        return Backfill(head.id, head.registry_id, head.region, bool(head.stopped),
                        head.started_at, total, completed, failed, pending, codes[:20],
                        ended if done else None)

    def get(self, backfill_id: str) -> Backfill | None:
        with self.database.read() as conn:
            exists = conn.execute(select(backfills.c.id).where(
                backfills.c.id == backfill_id)).scalar_one_or_none()
            return None if exists is None else self._summary(conn, backfill_id)

    def page(self, offset: int, limit: int) -> list[Backfill]:
        with self.database.read() as conn:
            ids = list(conn.execute(select(backfills.c.id).order_by(
                backfills.c.started_at.desc(), backfills.c.id).offset(offset).limit(limit)
            ).scalars())
            return [self._summary(conn, backfill_id) for backfill_id in ids]

    def results(self, backfill_id: str, status: str | None, offset: int,
                limit: int) -> list[BackfillResult]:
        with self.database.read() as conn:
            registry_id = conn.execute(select(backfills.c.registry_id).where(
                backfills.c.id == backfill_id)).scalar_one()
            rows = conn.execute(
                select(events.c.repository, events.c.digest, events.c.tag,
                       deliveries.c.status, deliveries.c.last_error)
                .join(items, items.c.event_row == events.c.id)
                .join(deliveries, deliveries.c.event_row == events.c.id)
                .where(items.c.backfill_id == backfill_id,
                       deliveries.c.consumer == CONSUMER_PREFIX + registry_id)
                .order_by(events.c.id)).all()
        settled = [BackfillResult(r.repository, r.digest, r.tag, outcome, r.last_error)
                   for r in rows
                   if (outcome := _settled(r.status, r.last_error)) is not None
                   and (status is None or outcome == status)]
        return settled[offset:offset + limit]

    def stop(self, backfill_id: str) -> Backfill:
        """Drop the backfill's pending deliveries; the caller checked it is in progress."""
        with self.database.write() as conn:
            conn.execute(update(backfills).where(backfills.c.id == backfill_id)
                         .values(stopped=True))
            conn.execute(update(deliveries).where(
                deliveries.c.status == "pending",
                deliveries.c.event_row.in_(select(items.c.event_row).where(
                    items.c.backfill_id == backfill_id)),
            ).values(status="dropped", lease_owner=None, lease_until=None,
                     updated_at=now_us()))
            return self._summary(conn, backfill_id)
