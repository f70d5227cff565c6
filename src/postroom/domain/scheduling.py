"""SQLAlchemy models of scheduled jobs, their runs and the messages runs queued."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from postroom.clock import utcnow
from postroom.domain.models import Base
from postroom.domain.types import UTCDateTime

DEFAULT_JOB_PROFILE = "DefaultDeliveryProfile"


class ReportFormat(enum.StrEnum):
    """Form of a job's report in the email: an inline table or an attachment."""

    HTML = "html"
    CSV = "csv"
    XLSX = "xlsx"
    PDF = "pdf"


class OnEmpty(enum.StrEnum):
    """Action of a job whose report has no rows."""

    SEND = "send"
    SKIP = "skip"


class RunOutcome(enum.StrEnum):
    """The outcome of a run as recorded: whether the report was produced and queued.

    Delivery happens later in the worker; views combine this with the
    delivery result of the messages the run queued.
    """

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    MISSED = "missed"


class RunTrigger(enum.StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"


class Job(Base):
    """A report that runs on a schedule and is emailed to its recipients."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    client: Mapped[str | None] = mapped_column(String(200))

    # Exactly one of cron and run_at is set. run_at is a wall-clock time in
    # time_zone, stored as ISO text without an offset, so a one-off job keeps
    # its local time even if the zone's rules change before it runs.
    cron: Mapped[str | None] = mapped_column(String(200))
    run_at: Mapped[str | None] = mapped_column(String(32))
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")

    # The report specification: {"kind": "sql" | "schedule-list" |
    # "schedule-history", ...}; see postroom.schedule.jobs.
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    format: Mapped[str] = mapped_column(String(8), default=ReportFormat.CSV)
    to_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    cc_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    bcc_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject_template: Mapped[str] = mapped_column(Text)
    body_template: Mapped[str] = mapped_column(Text)
    profile_name: Mapped[str] = mapped_column(String(200), default=DEFAULT_JOB_PROFILE)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    on_empty: Mapped[str] = mapped_column(String(8), default=OnEmpty.SEND)

    # The next slot the scheduler will run, in UTC; None when the job is
    # inactive or a one-off job has had its run.
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    # The run lease: set while a run of this job is in progress, so that no
    # second run starts, in this process or another. A lease that expired
    # belongs to a process that died; the run it names is then abandoned.
    run_lease_owner: Mapped[str | None] = mapped_column(String(200))
    run_lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    running_run_pk: Mapped[int | None] = mapped_column(Integer)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )


class JobRun(Base):
    """One run of a job: when, what happened, and the error with its diagnosis."""

    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Runs outlive their job: the name and client are copied so the history
    # still reads correctly after the job is deleted.
    job_pk: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    job_name: Mapped[str] = mapped_column(String(200), index=True)
    client: Mapped[str | None] = mapped_column(String(200))

    trigger: Mapped[str] = mapped_column(String(16), default=RunTrigger.SCHEDULE)
    # The slot this run is for; None for a run started by hand.
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(16), default=RunOutcome.RUNNING)
    rows: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # {"id", "step", "cause", "fix", "error"}: what failed and what to change.
    diagnosis: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    worker: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        # One run per slot, even if two schedulers raced for it.
        UniqueConstraint("job_pk", "scheduled_for", name="uq_job_runs_slot"),
        Index("ix_job_runs_started_at", "started_at"),
        Index("ix_job_runs_scheduled_for", "scheduled_for"),
    )


class JobRunMessage(Base):
    """A message a run queued; its delivery result is read from the outbox."""

    __tablename__ = "job_run_messages"

    run_pk: Mapped[int] = mapped_column(
        ForeignKey("job_runs.id", ondelete="CASCADE"), primary_key=True
    )
    message_pk: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True, index=True
    )
