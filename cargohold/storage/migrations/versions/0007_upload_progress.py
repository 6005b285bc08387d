"""upload progress: running digest and scratch state, so any node can continue an upload

Revision ID: 0007
Revises: 0010

"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_progress",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("hash_state", sa.LargeBinary(), nullable=True),
        sa.Column("scratch_state", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["upload_sessions.id"],
            name=op.f("fk_upload_progress_upload_id_upload_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("upload_id", name=op.f("pk_upload_progress")),
    )


def downgrade() -> None:
    op.drop_table("upload_progress")
