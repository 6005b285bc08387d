"""The outbox purge forgets old events but keeps what replication reports read: each stored
image's newest replication record per destination, and the events of backfills. On SQLite and
PostgreSQL, against the real schema (migrated by Alembic)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from cargohold.storage.database import Database
from cargohold.storage.events import EventStore
from cargohold.storage.replication import ReplicationStore
from cargohold.storage.schema import manifests, repositories
from cargohold.storage.schema_events import outbox_deliveries as deliveries
from cargohold.storage.schema_events import outbox_events as events
from cargohold.storage.schema_upstreams import replication_backfill_items, replication_backfills
from tests.dbfixtures import database_url, postgres_available

OLD, NEW, CUTOFF = 1_000, 9_000, 5_000
STORED = "sha256:" + "a" * 64
GONE = "sha256:" + "b" * 64


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "postgresql" and not postgres_available():
        pytest.skip("PostgreSQL is not reachable")
    with database_url(request.param, tmp_path) as url:
        db = Database(url)
        db.migrate()
        with db.write() as conn:
            repo = conn.execute(insert(repositories).values(
                name="team/app", created_at=OLD).returning(repositories.c.id)).scalar_one()
            conn.execute(insert(manifests).values(
                repository_id=repo, digest=STORED, media_type="application/json", size=2,
                content=b"{}", pushed_at=OLD))
        try:
            yield db
        finally:
            db.dispose()


def event(db: Database, n: int, action: str, digest: str | None, at: int,
          consumers: dict[str, str]) -> int:
    """An outbox event with one delivery per consumer, in the given status."""
    with db.write() as conn:
        row = conn.execute(insert(events).values(
            event_id=f"e{n}", topic="registry", action=action, repository="team/app",
            digest=digest, payload="{}", created_at=at).returning(events.c.id)).scalar_one()
        for consumer, status in consumers.items():
            conn.execute(insert(deliveries).values(
                event_row=row, consumer=consumer, status=status, attempts=1,
                next_attempt_at=at, updated_at=at,
                last_error="HTTP 503" if status == "expired" else None))
        return row


def remaining(db: Database) -> set[int]:
    with db.read() as conn:
        return set(conn.execute(select(events.c.id)).scalars())


def test_purge_keeps_the_newest_replication_record_of_each_stored_image(
        database: Database) -> None:
    first = event(database, 1, "push", STORED, OLD, {"replicate:111111111111": "delivered",
                                                     "replicate:222222222222": "expired"})
    again = event(database, 2, "tag", STORED, OLD, {"replicate:111111111111": "delivered"})
    webhook = event(database, 3, "push", STORED, OLD, {"https://hooks": "delivered"})
    deleted_image = event(database, 4, "push", GONE, OLD,
                          {"replicate:111111111111": "delivered"})
    pull = event(database, 5, "pull", STORED, OLD, {"replicate:111111111111": "delivered"})
    waiting = event(database, 6, "push", GONE, OLD, {"https://hooks": "pending"})
    recent = event(database, 7, "push", GONE, NEW, {})
    assert len(remaining(database)) == 7

    EventStore(database).purge(CUTOFF)

    # `first` is superseded for 111111111111 by `again` but still the newest for 222222222222.
    assert remaining(database) == {first, again, waiting, recent}
    assert {webhook, deleted_image, pull}.isdisjoint(remaining(database))
    states = {s.registry_id: s.status
              for s in ReplicationStore(database).image_states("team/app", STORED)}
    assert states == {"111111111111": "delivered", "222222222222": "expired"}

    # A newer delivery to 222222222222 supersedes `first`, which then goes.
    newer = event(database, 8, "push", STORED, OLD, {"replicate:222222222222": "delivered"})
    EventStore(database).purge(CUTOFF)
    assert remaining(database) == {again, newer, waiting, recent}
    assert EventStore(database).purge(CUTOFF) == 0  # nothing more: kept rows stay kept


def test_purge_keeps_the_events_of_backfills(database: Database) -> None:
    backfilled = event(database, 1, "push", GONE, OLD, {"replicate:111111111111": "delivered"})
    plain = event(database, 2, "push", GONE, OLD, {"replicate:111111111111": "delivered"})
    with database.write() as conn:
        conn.execute(insert(replication_backfills).values(
            id="bf-1", registry_id="111111111111", region="us-east-1", stopped=False,
            started_at=OLD))
        conn.execute(insert(replication_backfill_items).values(backfill_id="bf-1",
                                                               event_row=backfilled))
    EventStore(database).purge(CUTOFF)
    assert remaining(database) == {backfilled}
    assert plain not in remaining(database)
