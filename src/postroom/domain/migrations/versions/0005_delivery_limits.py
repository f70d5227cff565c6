"""Delivery limits on profiles, the accounting of what they sent, a due index.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profile_usage",
        sa.Column("profile_name", sa.String(length=200), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("profile_name", "period", "window_start"),
    )
    # Existing profiles get the same defaults as new ones.
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "max_connections", sa.Integer(), nullable=False, server_default="4"
            )
        )
        batch_op.add_column(
            sa.Column(
                "pool_idle_timeout", sa.Float(), nullable=False, server_default="60"
            )
        )
        batch_op.add_column(
            sa.Column("max_messages_per_second", sa.Integer(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("max_messages_per_minute", sa.Integer(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("max_messages_per_day", sa.Integer(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("max_recipients_per_message", sa.Integer(), nullable=True)
        )
    op.create_index(
        "ix_messages_due",
        "messages",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'sending')"),
        sqlite_where=sa.text("status IN ('queued', 'sending')"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_due", table_name="messages")
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.drop_column("max_recipients_per_message")
        batch_op.drop_column("max_messages_per_day")
        batch_op.drop_column("max_messages_per_minute")
        batch_op.drop_column("max_messages_per_second")
        batch_op.drop_column("pool_idle_timeout")
        batch_op.drop_column("max_connections")
    op.drop_table("profile_usage")
