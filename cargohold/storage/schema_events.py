"""The transactional outbox: events written in the same transaction as the change they report,
and one delivery row per (event, consumer) that background dispatchers claim with a lease.

Generic on purpose: `topic` says which stream an event belongs to ("registry" for registry
events) and `consumer` names who must receive it (a notification endpoint today; a replication
target could be another consumer of the same rows).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from cargohold.storage.schema import metadata, name_type

# SQLite only auto-increments an INTEGER PRIMARY KEY.
_ROW_ID = BigInteger().with_variant(Integer, "sqlite")

outbox_events = Table(
    "outbox_events", metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("topic", String(32), nullable=False),
    Column("action", String(16), nullable=False),
    Column("repository", name_type(255)),
    Column("digest", String(200)),
    Column("tag", String(128)),
    Column("media_type", String(255)),
    Column("payload", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index(None, "created_at"),
    Index(None, "repository", "digest"),
)

outbox_deliveries = Table(
    "outbox_deliveries", metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("event_row", _ROW_ID, ForeignKey("outbox_events.id", ondelete="CASCADE"),
           nullable=False),
    Column("consumer", String(255), nullable=False),
    # pending -> delivered | expired (too old) | dropped (backlog over its bound)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", BigInteger),
    Column("last_error", String(500)),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("event_row", "consumer"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "consumer", "status"),
)
