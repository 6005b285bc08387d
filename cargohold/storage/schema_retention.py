"""Tables of garbage collection and lifecycle policies, on the shared `schema.metadata`."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from cargohold.storage.schema import metadata, repository_blobs

# "Does any repository still link this blob?" is garbage collection's question: by digest.
Index("ix_repository_blobs_digest", repository_blobs.c.digest)

# A blob an upload is about to publish: garbage collection leaves its row and bytes alone.
# It lives exactly as long as its upload session (deleted with it, by cascade).
blob_pins = Table(
    "blob_pins", metadata,
    Column("upload_id", String(64), ForeignKey("upload_sessions.id", ondelete="CASCADE"),
           primary_key=True),
    Column("digest", String(200), nullable=False),
    Column("pinned_at", BigInteger, nullable=False),
    Index(None, "digest"),
)

# A blob whose row garbage collection deleted and whose bytes it is deleting. Uploads of that
# digest wait until it is gone, so fresh bytes are never deleted by an older decision.
blob_tombstones = Table(
    "blob_tombstones", metadata,
    Column("digest", String(200), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# One row per garbage-collection or lifecycle run: what it did, and when (for operators and
# for checking that runs never overlap).
maintenance_runs = Table(
    "maintenance_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(32), nullable=False),
    Column("holder", String(64), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=False),
    Column("dry_run", Integer, nullable=False),
    Column("report", Text, nullable=False),
    Index(None, "job", "started_at"),
)

lifecycle_policies = Table(
    "lifecycle_policies", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           primary_key=True),
    Column("policy_text", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("last_evaluated_at", BigInteger),
)

lifecycle_previews = Table(
    "lifecycle_previews", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           primary_key=True),
    Column("policy_text", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("results", Text, nullable=False),
    Column("started_at", BigInteger, nullable=False),
)
