"""retention: blob pins and tombstones, maintenance runs, lifecycle policies

Revision ID: 0005
Revises: 0004

"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_repository_blobs_digest"), "repository_blobs", ["digest"],
                    unique=False)
    op.create_table(
        "blob_pins",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=200), nullable=False),
        sa.Column("pinned_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["upload_sessions.id"],
                                name=op.f("fk_blob_pins_upload_id_upload_sessions"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("upload_id", name=op.f("pk_blob_pins")),
    )
    op.create_index(op.f("ix_blob_pins_digest"), "blob_pins", ["digest"], unique=False)
    op.create_table(
        "blob_tombstones",
        sa.Column("digest", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_blob_tombstones")),
    )
    op.create_table(
        "maintenance_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=False),
        sa.Column("dry_run", sa.Integer(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_runs")),
    )
    op.create_index(op.f("ix_maintenance_runs_job_started_at"), "maintenance_runs",
                    ["job", "started_at"], unique=False)
    op.create_table(
        "lifecycle_policies",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("policy_text", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("last_evaluated_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"],
                                name=op.f("fk_lifecycle_policies_repository_id_repositories"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("repository_id", name=op.f("pk_lifecycle_policies")),
    )
    op.create_table(
        "lifecycle_previews",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("policy_text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("results", sa.Text(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"],
                                name=op.f("fk_lifecycle_previews_repository_id_repositories"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("repository_id", name=op.f("pk_lifecycle_previews")),
    )


def downgrade() -> None:
    op.drop_table("lifecycle_previews")
    op.drop_table("lifecycle_policies")
    op.drop_index(op.f("ix_maintenance_runs_job_started_at"), table_name="maintenance_runs")
    op.drop_table("maintenance_runs")
    op.drop_table("blob_tombstones")
    op.drop_index(op.f("ix_blob_pins_digest"), table_name="blob_pins")
    op.drop_table("blob_pins")
    op.drop_index(op.f("ix_repository_blobs_digest"), table_name="repository_blobs")
