"""Registry-wide ECR settings: account settings, the registry policy, creation templates.

Defined on the same `MetaData` as `schema.py` (migration 0004 creates them).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, String, Table, Text

from cargohold.storage.schema import metadata, name_type

# PutAccountSetting values, e.g. BLOB_MOUNTING = DISABLED; an absent row means the default.
account_settings = Table(
    "account_settings", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(64), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# The registry policy (PutRegistryPolicy): at most one row, id 1.
registry_policy = Table(
    "registry_policy", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("document", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Repository creation templates, keyed by their prefix without a trailing slash ("ROOT" for
# the template of every repository no other template covers). JSON columns hold lists/maps.
repository_creation_templates = Table(
    "repository_creation_templates", metadata,
    Column("prefix", name_type(256), primary_key=True),
    Column("description", String(256)),
    Column("encryption_type", String(16), nullable=False, server_default="AES256"),
    Column("kms_key", String(2048)),
    Column("resource_tags", Text, nullable=False, server_default="{}"),
    Column("image_tag_mutability", String(32), nullable=False, server_default="MUTABLE"),
    Column("tag_mutability_exclusions", Text, nullable=False, server_default="[]"),
    Column("repository_policy", Text),
    # Stored now, applied once Cargohold has lifecycle policies.
    Column("lifecycle_policy", Text),
    Column("applied_for", Text, nullable=False),
    Column("custom_role_arn", String(2048)),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
