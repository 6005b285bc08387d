"""outbox events by image: an index on (repository, digest), read by
DescribeImageReplicationStatus and by the purge, which keeps each image's newest replication
record

Revision ID: 0011
Revises: 0007

"""

from alembic import op

revision = "0011"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_outbox_events_repository_digest"), "outbox_events",
                    ["repository", "digest"])


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_events_repository_digest"), table_name="outbox_events")
