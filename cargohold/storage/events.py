"""The outbox store: record events inside a change's transaction; claim, settle and expire
their deliveries; list recent events. See `schema_events.py` for the tables."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from cargohold.storage.database import Database
from cargohold.storage.schema import blobs, manifests, repositories
from cargohold.storage.schema_events import outbox_deliveries as deliveries
from cargohold.storage.schema_events import outbox_events as events
from cargohold.storage.schema_upstreams import replication_backfill_items as backfill_items
from cargohold.storage.sql import Prepared, Tx, tx_of

REGISTRY_TOPIC = "registry"
REPLICATION_CONSUMER_PREFIX = "replicate:"  # + a destination's registryId

# Why the deletes recorded in this context happen: "delete" (a client asked), or "lifecycle"
# (a lifecycle policy expired the image). Set by the caller; it follows `Storage.db` threads.
DELETE_CAUSE: ContextVar[str] = ContextVar("cargohold_delete_cause", default="delete")


@dataclass(frozen=True, slots=True)
class Change:
    """One registry event as the storage layer sees it; `context` is filled by the router
    (request id, actor, host) from the request being served."""

    action: str  # push, tag, delete, pull, lifecycle
    repository: str
    digest: str | None = None
    media_type: str | None = None
    size: int | None = None
    tag: str | None = None
    artifact_type: str | None = None
    context: dict[str, Any] = field(default_factory=dict)


# Given a change, the consumers that must receive it and the request context to store with it.
Router = Callable[[Change], tuple[list[str], dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    row: int
    event_id: str
    action: str
    created_at: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery: int
    consumer: str
    attempts: int
    event: StoredEvent


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome of one delivery attempt by the holder of its lease."""

    delivery: int
    owner: str
    delivered: bool
    retry_at: int | None = None
    error: str | None = None


# Every manifest push writes these: compiled once (sql.py).
_INSERT_EVENT = Prepared(insert(events).values(
    event_id=bindparam("event_id"), topic=REGISTRY_TOPIC, action=bindparam("action"),
    repository=bindparam("repository"), digest=bindparam("digest"), tag=bindparam("tag"),
    media_type=bindparam("media_type"), payload=bindparam("payload"),
    created_at=bindparam("now"),
).returning(events.c.id))
_INSERT_DELIVERY = Prepared(insert(deliveries).values(
    event_row=bindparam("event_row"), consumer=bindparam("consumer"), status="pending",
    attempts=0, next_attempt_at=bindparam("now"), updated_at=bindparam("now")))


class Outbox:
    """Writes events in the caller's transaction. `router` is installed by the services layer;
    without it events are still recorded (for `cargohold events list`) with no deliveries."""

    def __init__(self) -> None:
        self.router: Router | None = None
        self.recorded: Callable[[str], None] | None = None

    def record(self, conn: Connection | Tx, changes: Sequence[Change], now: int) -> None:
        tx = tx_of(conn)
        cause = DELETE_CAUSE.get()
        for change in changes:
            if change.action == "delete" and cause != "delete":
                change = replace(change, action=cause)
            consumers, context = self.router(change) if self.router else ([], {})
            context = change.context or context  # recorded later, off its request (pulls)
            event_id = str(uuid.uuid4())
            data = {**_fields_of(change), "id": event_id, "at": now, "context": context}
            row = tx.scalar(_INSERT_EVENT, {
                "event_id": event_id, "action": change.action,
                "repository": change.repository, "digest": change.digest, "tag": change.tag,
                "media_type": change.media_type, "payload": json.dumps(data), "now": now})
            tx.many(_INSERT_DELIVERY, [{"event_row": row, "consumer": consumer, "now": now}
                                       for consumer in consumers])
            if self.recorded is not None:
                self.recorded(change.action)


def _fields_of(change: Change) -> dict[str, Any]:
    """The change's fields as a dict: `asdict`'s deep copy cost ~12 µs per event, and the
    payload is serialised right away."""
    return {name: getattr(change, name) for name in _CHANGE_FIELDS}


_CHANGE_FIELDS = tuple(f.name for f in fields(Change))


def _stored(row: Any) -> StoredEvent:
    return StoredEvent(row.id, row.event_id, row.action, row.created_at, json.loads(row.payload))


_EVENT_COLUMNS = (events.c.id, events.c.event_id, events.c.action, events.c.created_at,
                  events.c.payload)


def _replication_record() -> ColumnElement[bool]:
    """True for an event that replication reports still need (see `EventStore.purge`)."""
    later_event, later = events.alias("later_event"), deliveries.alias("later_delivery")
    image_actions = ("push", "tag")
    superseded = exists().where(
        later.c.event_row == later_event.c.id, later.c.consumer == deliveries.c.consumer,
        later.c.id > deliveries.c.id, later_event.c.repository == events.c.repository,
        later_event.c.digest == events.c.digest, later_event.c.action.in_(image_actions)
    ).correlate(events, deliveries)  # the outer event and its delivery, two levels up
    newest = exists().where(deliveries.c.event_row == events.c.id, ~superseded,
                            deliveries.c.consumer.like(REPLICATION_CONSUMER_PREFIX + "%"))
    stored = exists().where(manifests.c.repository_id == repositories.c.id,
                            repositories.c.name == events.c.repository,
                            manifests.c.digest == events.c.digest)
    backfilled = exists().where(backfill_items.c.event_row == events.c.id)
    return or_(and_(events.c.action.in_(image_actions), newest, stored), backfilled)


_REPLICATION_RECORD = _replication_record()


class EventStore:
    """Delivery bookkeeping. Claims take a lease (an UPDATE guarded by `lease_until < now`,
    plus FOR UPDATE SKIP LOCKED on PostgreSQL), so with several workers or nodes each due
    delivery is attempted by one of them at a time."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._postgres = database.engine.dialect.name == "postgresql"

    def record(self, outbox: Outbox, changes: Sequence[Change], now: int) -> None:
        """Best-effort events (pulls) in a transaction of their own."""
        with self.database.write() as conn:
            outbox.record(conn, changes, now)

    def has_due(self, consumers: Sequence[str], now: int) -> bool:
        with self.database.read() as conn:
            return conn.execute(select(deliveries.c.id).where(
                deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now,
                deliveries.c.consumer.in_(list(consumers)),
                or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
            ).limit(1)).first() is not None

    def claim(self, consumers: Sequence[str], owner: str, now: int, lease_us: int,
              limit: int) -> list[Claimed]:
        free = or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
        with self.database.write() as conn:
            due = (select(deliveries.c.id)
                   .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now,
                          deliveries.c.consumer.in_(list(consumers)), free)
                   .order_by(deliveries.c.id).limit(limit))
            if self._postgres:
                due = due.with_for_update(skip_locked=True)
            ids = list(conn.execute(due).scalars())
            if not ids:
                return []
            conn.execute(update(deliveries).where(
                deliveries.c.id.in_(ids), deliveries.c.status == "pending", free,
            ).values(lease_owner=owner, lease_until=now + lease_us))
            rows = conn.execute(
                select(deliveries.c.id.label("delivery"), deliveries.c.consumer,
                       deliveries.c.attempts, *_EVENT_COLUMNS)
                .join(events, events.c.id == deliveries.c.event_row)
                .where(deliveries.c.id.in_(ids), deliveries.c.lease_owner == owner)
                .order_by(deliveries.c.id)).all()
        return [Claimed(row.delivery, row.consumer, row.attempts, _stored(row)) for row in rows]

    def settle(self, outcomes: Sequence[Settlement], now: int) -> None:
        """Record attempts' outcomes (one transaction), where the owner still holds the lease."""
        with self.database.write() as conn:
            for outcome in outcomes:
                values: dict[str, Any] = {"lease_owner": None, "lease_until": None,
                                          "updated_at": now,
                                          "attempts": deliveries.c.attempts + 1}
                if outcome.delivered:
                    values["status"] = "delivered"
                else:
                    values.update(next_attempt_at=outcome.retry_at or now,
                                  last_error=(outcome.error or "")[:500])
                conn.execute(update(deliveries).where(
                    deliveries.c.id == outcome.delivery,
                    deliveries.c.lease_owner == outcome.owner).values(**values))

    def expire(self, consumers: Sequence[str], older_than: int, max_backlog: int,
               now: int) -> dict[tuple[str, str], int]:
        """Give up on deliveries of events older than `older_than` (expired) and on the oldest
        beyond `max_backlog` pending per consumer (dropped). Returns counts by (consumer,
        result)."""
        counts: dict[tuple[str, str], int] = {}
        old_events = select(events.c.id).where(events.c.created_at < older_than)
        with self.database.write() as conn:
            for consumer in consumers:
                pending = and_(deliveries.c.status == "pending",
                               deliveries.c.consumer == consumer)
                expired = conn.execute(update(deliveries).where(
                    pending, deliveries.c.event_row.in_(old_events)
                ).values(status="expired", lease_owner=None, lease_until=None,
                         updated_at=now)).rowcount
                backlog = conn.execute(select(func.count()).where(pending)).scalar_one()
                dropped = 0
                if backlog > max_backlog:
                    oldest = (select(deliveries.c.id).where(pending).order_by(deliveries.c.id)
                              .limit(backlog - max_backlog))
                    dropped = conn.execute(update(deliveries).where(
                        deliveries.c.id.in_(list(conn.execute(oldest).scalars()))
                    ).values(status="dropped", lease_owner=None, lease_until=None,
                             updated_at=now)).rowcount
                counts[(consumer, "expired")] = expired
                counts[(consumer, "dropped")] = dropped
        return counts

    def purge(self, older_than: int) -> int:
        """Forget events older than `older_than` that no consumer still waits for, except
        what replication reports read: each stored image's newest replication record per
        destination (DescribeImageReplicationStatus) and the events of backfills."""
        waiting = exists().where(deliveries.c.event_row == events.c.id,
                                 deliveries.c.status == "pending")
        with self.database.write() as conn:
            old = list(conn.execute(select(events.c.id).where(
                events.c.created_at < older_than, ~waiting, ~_REPLICATION_RECORD
            ).limit(10_000)).scalars())
            if not old:
                return 0
            conn.execute(delete(deliveries).where(deliveries.c.event_row.in_(old)))
            return conn.execute(delete(events).where(events.c.id.in_(old))).rowcount

    def since(self, after_row: int = 0, since_us: int = 0, limit: int = 100,
              newest: bool = False) -> list[StoredEvent]:
        query = select(*_EVENT_COLUMNS).where(events.c.id > after_row,
                                              events.c.created_at >= since_us)
        query = query.order_by(events.c.id.desc() if newest else events.c.id).limit(limit)
        with self.database.read() as conn:
            rows = conn.execute(query).all()
        stored = [_stored(row) for row in rows]
        return list(reversed(stored)) if newest else stored

    def delivery_states(self, event_rows: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        states: dict[int, list[dict[str, Any]]] = {}
        if not event_rows:
            return states
        with self.database.read() as conn:
            for row in conn.execute(select(
                    deliveries.c.event_row, deliveries.c.consumer, deliveries.c.status,
                    deliveries.c.attempts, deliveries.c.last_error).where(
                    deliveries.c.event_row.in_(list(event_rows)))):
                states.setdefault(row.event_row, []).append(
                    {"consumer": row.consumer, "status": row.status, "attempts": row.attempts,
                     "last_error": row.last_error})
        return states

    def queue_depth(self) -> dict[str, int]:
        with self.database.read() as conn:
            return {row.consumer: row.n for row in conn.execute(
                select(deliveries.c.consumer, func.count().label("n"))
                .where(deliveries.c.status == "pending").group_by(deliveries.c.consumer))}

    def registry_totals(self) -> dict[str, int]:
        """Repositories, manifests, blobs and blob bytes: four aggregate queries."""
        with self.database.read() as conn:
            blob_count, blob_bytes = conn.execute(
                select(func.count(), func.coalesce(func.sum(blobs.c.size), 0))).one()
            return {
                "repositories": conn.execute(select(func.count()).select_from(repositories)
                                             ).scalar_one(),
                "manifests": conn.execute(select(func.count()).select_from(manifests)
                                          ).scalar_one(),
                "blobs": int(blob_count), "blob_bytes": int(blob_bytes),
            }
