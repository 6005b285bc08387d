"""The metadata schema, as SQLAlchemy Core tables that run on SQLite and PostgreSQL.

Times are integer microseconds since the epoch, so both engines store them the same way.
Names compare byte-wise ("C" collation) so listings are ASCIIbetical on every engine.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)


def name_type(length: int) -> String:
    """A string that sorts byte-wise on every engine."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

repositories = Table(
    "repositories", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", name_type(255), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
)

blobs = Table(
    "blobs", metadata,
    Column("digest", String(200), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

repository_blobs = Table(
    "repository_blobs", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           primary_key=True),
    Column("digest", String(200), ForeignKey("blobs.digest"), primary_key=True),
    Column("linked_at", BigInteger, nullable=False),
)

manifests = Table(
    "manifests", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           nullable=False),
    Column("digest", String(200), nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("artifact_type", String(255)),
    Column("config_media_type", String(255)),
    Column("subject_digest", String(200)),
    Column("annotations", Text),
    Column("size", BigInteger, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("pushed_at", BigInteger, nullable=False),
    Column("last_pulled_at", BigInteger),
    UniqueConstraint("repository_id", "digest"),
    Index(None, "repository_id", "subject_digest"),
    Index(None, "repository_id", "artifact_type"),
)

# What a manifest points at: blobs (config, layers) and child manifests (index entries).
manifest_references = Table(
    "manifest_references", metadata,
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"),
           primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("digest", String(200), primary_key=True),
    Index(None, "digest"),
)

tags = Table(
    "tags", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           primary_key=True),
    Column("name", name_type(128), primary_key=True),
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"),
           nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index(None, "manifest_id"),
)

upload_sessions = Table(
    "upload_sessions", metadata,
    Column("id", String(64), primary_key=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           nullable=False),
    Column("algorithm", String(16), nullable=False),
    # Bytes acknowledged to the client; scratch bytes past it are from an interrupted chunk.
    Column("size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
