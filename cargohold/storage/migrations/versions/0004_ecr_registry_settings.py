"""ecr registry settings: account settings, registry policy, repository creation templates

Revision ID: 0004
Revises: 0003

"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _name(length: int) -> sa.String:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "account_settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_account_settings")),
    )
    op.create_table(
        "registry_policy",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_policy")),
    )
    op.create_table(
        "repository_creation_templates",
        sa.Column("prefix", _name(256), nullable=False),
        sa.Column("description", sa.String(length=256), nullable=True),
        sa.Column("encryption_type", sa.String(length=16), server_default="AES256", nullable=False),
        sa.Column("kms_key", sa.String(length=2048), nullable=True),
        sa.Column("resource_tags", sa.Text(), server_default="{}", nullable=False),
        sa.Column("image_tag_mutability", sa.String(length=32), server_default="MUTABLE", nullable=False),
        sa.Column("tag_mutability_exclusions", sa.Text(), server_default="[]", nullable=False),
        sa.Column("repository_policy", sa.Text(), nullable=True),
        sa.Column("lifecycle_policy", sa.Text(), nullable=True),
        sa.Column("applied_for", sa.Text(), nullable=False),
        sa.Column("custom_role_arn", sa.String(length=2048), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", name=op.f("pk_repository_creation_templates")),
    )


def downgrade() -> None:
    op.drop_table("repository_creation_templates")
    op.drop_table("registry_policy")
    op.drop_table("account_settings")
