"""Scheduled jobs, their runs and the messages each run queued.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("client", sa.String(length=200), nullable=True),
        sa.Column("cron", sa.String(length=200), nullable=True),
        sa.Column("run_at", sa.String(length=32), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("to_addresses", sa.JSON(), nullable=False),
        sa.Column("cc_addresses", sa.JSON(), nullable=False),
        sa.Column("bcc_addresses", sa.JSON(), nullable=False),
        sa.Column("subject_template", sa.Text(), nullable=False),
        sa.Column("body_template", sa.Text(), nullable=False),
        sa.Column("profile_name", sa.String(length=200), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("on_empty", sa.String(length=8), nullable=False),
        sa.Column("next_run_at", sa.DateTime(), nullable=True),
        sa.Column("run_lease_owner", sa.String(length=200), nullable=True),
        sa.Column("run_lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("running_run_pk", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_jobs_next_run_at"), ["next_run_at"], unique=False
        )

    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=True),
        sa.Column("job_name", sa.String(length=200), nullable=False),
        sa.Column("client", sa.String(length=200), nullable=True),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("diagnosis", sa.JSON(), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_pk", "scheduled_for", name="uq_job_runs_slot"),
    )
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_job_runs_job_name"), ["job_name"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_job_runs_job_pk"), ["job_pk"], unique=False
        )
        batch_op.create_index(
            "ix_job_runs_scheduled_for", ["scheduled_for"], unique=False
        )
        batch_op.create_index("ix_job_runs_started_at", ["started_at"], unique=False)

    op.create_table(
        "job_run_messages",
        sa.Column("run_pk", sa.Integer(), nullable=False),
        sa.Column("message_pk", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["message_pk"], ["messages.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_pk"], ["job_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_pk", "message_pk"),
    )
    with op.batch_alter_table("job_run_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_job_run_messages_message_pk"), ["message_pk"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("job_run_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_run_messages_message_pk"))

    op.drop_table("job_run_messages")
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_job_runs_started_at")
        batch_op.drop_index("ix_job_runs_scheduled_for")
        batch_op.drop_index(batch_op.f("ix_job_runs_job_pk"))
        batch_op.drop_index(batch_op.f("ix_job_runs_job_name"))

    op.drop_table("job_runs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_next_run_at"))

    op.drop_table("jobs")
