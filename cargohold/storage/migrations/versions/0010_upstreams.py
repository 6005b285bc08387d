"""pull-through cache rules, upstream credentials, cached tag checks, replication

Revision ID: 0010
Revises: 0008

"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def _name(length: int) -> sa.String:
    return sa.String(length=length).with_variant(sa.String(length=length, collation="C"),
                                                 "postgresql")


def upgrade() -> None:
    op.create_table(
        "upstream_credentials",
        sa.Column("name", _name(512), nullable=False),
        sa.Column("username", sa.String(length=512), nullable=False),
        sa.Column("secret_ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_upstream_credentials")),
    )
    op.create_table(
        "pull_through_rules",
        sa.Column("prefix", _name(30), nullable=False),
        sa.Column("upstream_url", sa.String(length=2048), nullable=False),
        sa.Column("upstream_prefix", sa.String(length=30), nullable=True),
        sa.Column("upstream_registry", sa.String(length=64), nullable=True),
        sa.Column("credential_arn", sa.String(length=612), nullable=True),
        sa.Column("allow_push", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("prefix", name=op.f("pk_pull_through_rules")),
    )
    op.create_table(
        "cached_tag_checks",
        sa.Column("repository", _name(255), nullable=False),
        sa.Column("tag", _name(128), nullable=False),
        sa.Column("checked_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("repository", "tag", name=op.f("pk_cached_tag_checks")),
    )
    op.create_table(
        "replication_destinations",
        sa.Column("registry_id", sa.String(length=12), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("username", sa.String(length=512), nullable=True),
        sa.Column("secret_ciphertext", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("registry_id", name=op.f("pk_replication_destinations")),
    )
    op.create_table(
        "replication_configuration",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replication_configuration")),
    )
    op.create_table(
        "replication_backfills",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("registry_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=25), nullable=False),
        sa.Column("stopped", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replication_backfills")),
    )
    op.create_table(
        "replication_backfill_items",
        sa.Column("backfill_id", sa.String(length=36), nullable=False),
        sa.Column("event_row", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("backfill_id", "event_row",
                                name=op.f("pk_replication_backfill_items")),
    )


def downgrade() -> None:
    op.drop_table("replication_backfill_items")
    op.drop_table("replication_backfills")
    op.drop_table("replication_configuration")
    op.drop_table("replication_destinations")
    op.drop_table("cached_tag_checks")
    op.drop_table("pull_through_rules")
    op.drop_table("upstream_credentials")
