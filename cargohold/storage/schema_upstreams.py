"""Tables of the upstream features: pull-through cache rules, the upstream credentials they
use (sealed under the server key, like access-key secrets), and when each cached tag was last
checked against its upstream."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, String, Table, Text, false

from cargohold.storage.schema import metadata, name_type

upstream_credentials = Table(
    "upstream_credentials", metadata,
    Column("name", name_type(512), primary_key=True),
    Column("username", String(512), nullable=False),
    Column("secret_ciphertext", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

pull_through_rules = Table(
    "pull_through_rules", metadata,
    # ECR's ecrRepositoryPrefix, without a trailing slash ("ROOT" matches every repository).
    Column("prefix", name_type(30), primary_key=True),
    Column("upstream_url", String(2048), nullable=False),
    Column("upstream_prefix", String(30)),
    Column("upstream_registry", String(64)),
    Column("credential_arn", String(612)),
    # ECR refuses pushes into cache repositories; a rule may allow them.
    Column("allow_push", Boolean, nullable=False, server_default=false()),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger),
)

cached_tag_checks = Table(
    "cached_tag_checks", metadata,
    Column("repository", name_type(255), primary_key=True),
    Column("tag", name_type(128), primary_key=True),
    Column("checked_at", BigInteger, nullable=False),
)

replication_destinations = Table(
    "replication_destinations", metadata,
    # The registryId that PutReplicationConfiguration's destinations name.
    Column("registry_id", String(12), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("username", String(512)),
    Column("secret_ciphertext", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# The registry's replication configuration (ECR's shape, as JSON): one row, id 1.
replication_configuration = Table(
    "replication_configuration", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("document", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

replication_backfills = Table(
    "replication_backfills", metadata,
    Column("id", String(36), primary_key=True),
    Column("registry_id", String(12), nullable=False),
    Column("region", String(25), nullable=False),
    Column("stopped", Boolean, nullable=False, server_default=false()),
    Column("started_at", BigInteger, nullable=False),
)

# The outbox events a backfill queued (one per image and tag), to report its progress.
replication_backfill_items = Table(
    "replication_backfill_items", metadata,
    Column("backfill_id", String(36), primary_key=True),
    Column("event_row", BigInteger, primary_key=True),
)
