"""Replication destinations, the replication configuration, and what the outbox says about
an image's replication (its deliveries to `replicate:<registryId>` consumers)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from cargohold.storage.database import Database
from cargohold.storage.events import REPLICATION_CONSUMER_PREFIX
from cargohold.storage.metadata import now_us
from cargohold.storage.schema_events import outbox_deliveries as deliveries
from cargohold.storage.schema_events import outbox_events as events
from cargohold.storage.schema_upstreams import (
    replication_configuration,
    replication_destinations,
)

CONSUMER_PREFIX = REPLICATION_CONSUMER_PREFIX


@dataclass(frozen=True, slots=True)
class Destination:
    registry_id: str
    url: str
    username: str | None
    secret_ciphertext: str | None


@dataclass(frozen=True, slots=True)
class DeliveryState:
    registry_id: str
    status: str
    attempts: int
    last_error: str | None


class ReplicationStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def put_destination(self, registry_id: str, url: str, username: str | None,
                        secret_ciphertext: str | None) -> None:
        now = now_us()
        values = {"url": url, "username": username, "secret_ciphertext": secret_ciphertext,
                  "updated_at": now}
        with self.database.write() as conn:
            statement = self.database.insert(replication_destinations).values(
                registry_id=registry_id, created_at=now, **values)
            conn.execute(statement.on_conflict_do_update(index_elements=["registry_id"],
                                                         set_=values))

    def destinations(self) -> list[Destination]:
        with self.database.read() as conn:
            rows = conn.execute(select(replication_destinations)
                                .order_by(replication_destinations.c.registry_id)).all()
        return [Destination(r.registry_id, r.url, r.username, r.secret_ciphertext)
                for r in rows]

    def configuration(self) -> dict[str, Any]:
        with self.database.read() as conn:
            text = conn.execute(select(replication_configuration.c.document).where(
                replication_configuration.c.id == 1)).scalar_one_or_none()
        return json.loads(text) if text else {"rules": []}

    def put_configuration(self, document: dict[str, Any]) -> None:
        now = now_us()
        with self.database.write() as conn:
            statement = self.database.insert(replication_configuration).values(
                id=1, document=json.dumps(document), updated_at=now)
            conn.execute(statement.on_conflict_do_update(
                index_elements=["id"], set_={"document": json.dumps(document),
                                             "updated_at": now}))

    def image_states(self, repository: str, digest: str) -> list[DeliveryState]:
        """The newest replication delivery of this image to each destination."""
        query = (select(deliveries.c.consumer, deliveries.c.status, deliveries.c.attempts,
                        deliveries.c.last_error)
                 .join(events, events.c.id == deliveries.c.event_row)
                 .where(events.c.repository == repository, events.c.digest == digest,
                        events.c.action.in_(["push", "tag"]),
                        deliveries.c.consumer.like(CONSUMER_PREFIX + "%"))
                 .order_by(deliveries.c.id.desc()))
        newest: dict[str, DeliveryState] = {}
        with self.database.read() as conn:
            for row in conn.execute(query):
                registry_id = row.consumer[len(CONSUMER_PREFIX):]
                newest.setdefault(registry_id, DeliveryState(registry_id, row.status,
                                                             row.attempts, row.last_error))
        return list(newest.values())
