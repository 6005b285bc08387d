"""The metadata schema, as SQLAlchemy Core tables that run on SQLite and PostgreSQL.

Times are integer microseconds since the epoch, so both engines store them the same way.
Names compare byte-wise ("C" collation) so listings are ASCIIbetical on every engine.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
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
    false,
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
    # ECR repository settings, stored and echoed (tag mutability is also enforced).
    Column("image_tag_mutability", String(32), nullable=False, server_default="MUTABLE"),
    Column("tag_mutability_exclusions", Text),
    Column("scan_on_push", Boolean, nullable=False, server_default=false()),
    Column("encryption_type", String(16), nullable=False, server_default="AES256"),
    Column("kms_key", String(2048)),
)

# Resource tags (ECR TagResource), not to be confused with image tags.
repository_resource_tags = Table(
    "repository_resource_tags", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
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
    # Manifest + config + layers (an index: its largest child), as ECR reports it.
    Column("image_size", BigInteger, nullable=False, server_default="0"),
    Column("content", LargeBinary, nullable=False),
    Column("pushed_at", BigInteger, nullable=False),
    Column("last_pulled_at", BigInteger),
    UniqueConstraint("repository_id", "digest"),
    Index(None, "repository_id", "subject_digest"),
    Index(None, "repository_id", "artifact_type"),
    Index(None, "repository_id", "id"),
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
    # ECR's UploadLayerPart needs every part but the last to be at least 5 MiB.
    Column("last_chunk_size", BigInteger, nullable=False, server_default="0"),
    Column("undersized_part", Boolean, nullable=False, server_default=false()),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# -- identity and access ---------------------------------------------------------------------

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", name_type(64), nullable=False, unique=True),
    # Argon2id hash of an optional registry password; access keys are the usual credential.
    Column("password_hash", Text),
    Column("created_at", BigInteger, nullable=False),
    # Never reuse an id: a token names its user by id.
    sqlite_autoincrement=True,
)

access_keys = Table(
    "access_keys", metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # SigV4 needs the secret itself, so it is encrypted under the server key, not hashed.
    Column("secret_ciphertext", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index(None, "user_id"),
)

user_policies = Table(
    "user_policies", metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("document", Text, nullable=False),
)

repository_policies = Table(
    "repository_policies", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           primary_key=True),
    Column("document", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

audit_events = Table(
    "audit_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("principal", String(255)),
    Column("access_key_id", String(32)),
    Column("action", String(64), nullable=False),
    Column("repository", String(255)),
    Column("outcome", String(16), nullable=False),
    Column("status", Integer),
    Column("remote", String(64)),
    Column("detail", Text),
    Column("request_id", String(128)),
    Index(None, "at"),
)
