"""event outbox, request ids in the audit log

Revision ID: 0006
Revises: 0005

"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("topic", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("repository", sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql"), nullable=True),
        sa.Column("digest", sa.String(length=200), nullable=True),
        sa.Column("tag", sa.String(length=128), nullable=True),
        sa.Column("media_type", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_events_event_id")),
    )
    op.create_index(op.f("ix_outbox_events_created_at"), "outbox_events", ["created_at"])
    op.create_table(
        "outbox_deliveries",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("event_row", _ROW_ID, nullable=False),
        sa.Column("consumer", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["event_row"], ["outbox_events.id"],
                                name=op.f("fk_outbox_deliveries_event_row_outbox_events"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_deliveries")),
        sa.UniqueConstraint("event_row", "consumer",
                            name=op.f("uq_outbox_deliveries_event_row_consumer")),
    )
    op.create_index(op.f("ix_outbox_deliveries_status_next_attempt_at"), "outbox_deliveries",
                    ["status", "next_attempt_at"])
    op.create_index(op.f("ix_outbox_deliveries_consumer_status"), "outbox_deliveries",
                    ["consumer", "status"])
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("request_id")
    op.drop_index(op.f("ix_outbox_deliveries_consumer_status"), table_name="outbox_deliveries")
    op.drop_index(op.f("ix_outbox_deliveries_status_next_attempt_at"),
                  table_name="outbox_deliveries")
    op.drop_table("outbox_deliveries")
    op.drop_index(op.f("ix_outbox_events_created_at"), table_name="outbox_events")
    op.drop_table("outbox_events")
