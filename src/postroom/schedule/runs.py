"""Recording runs: the run lease that keeps a job from running twice at once,
and the rows for started, finished, skipped and missed runs.

The lease lives on the job row and is taken with one conditional UPDATE, so
two processes (or a scheduler and an operator's "run now") cannot both take
it. A lease that expired belongs to a process that died mid-run; the run it
names is recorded as failed when the lease is next taken or recovered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from postroom.config import Settings
from postroom.domain.db import transaction
from postroom.domain.scheduling import (
    Job,
    JobRun,
    JobRunMessage,
    OnEmpty,
    ReportFormat,
    RunOutcome,
    RunTrigger,
)
from postroom.errors import ConflictError, NotFoundError

log = logging.getLogger("postroom.scheduler")

# Time a run may take beyond the report's time limit (building and queueing
# the email) before its lease is considered abandoned.
_LEASE_MARGIN_SECONDS = 300.0


@dataclass(frozen=True)
class JobSnapshot:
    """The fields of a job that a run uses, read when the run started."""

    pk: int
    name: str
    client: str | None
    time_zone: str
    report: dict[str, Any]
    format: ReportFormat
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject_template: str
    body_template: str
    profile_name: str
    on_empty: OnEmpty

    @classmethod
    def of(cls, job: Job) -> JobSnapshot:
        return cls(
            pk=job.id,
            name=job.name,
            client=job.client,
            time_zone=job.time_zone,
            report=dict(job.report),
            format=ReportFormat(job.format),
            to=list(job.to_addresses),
            cc=list(job.cc_addresses),
            bcc=list(job.bcc_addresses),
            subject_template=job.subject_template,
            body_template=job.body_template,
            profile_name=job.profile_name,
            on_empty=OnEmpty(job.on_empty),
        )


@dataclass(frozen=True)
class ClaimedRun:
    """A run that holds its job's lease and is to be executed by ``owner``."""

    run_pk: int
    job: JobSnapshot
    trigger: RunTrigger
    scheduled_for: datetime | None
    started_at: datetime
    owner: str


def lease_seconds(settings: Settings) -> float:
    return settings.report_max_seconds + _LEASE_MARGIN_SECONDS


def _take_lease(
    session: Session, job_pk: int, owner: str, now: datetime, seconds: float
) -> int | None:
    """Take the run lease of a job; return the abandoned run it replaces, or 0.

    Returns None when another run holds a lease that has not expired.
    """
    previous = session.execute(
        select(Job.running_run_pk, Job.run_lease_owner).where(Job.id == job_pk)
    ).one()
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_pk,
            or_(Job.run_lease_owner.is_(None), Job.run_lease_expires_at <= now),
        )
        .values(
            run_lease_owner=owner,
            run_lease_expires_at=now + timedelta(seconds=seconds),
            running_run_pk=None,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    if previous.run_lease_owner is not None and previous.running_run_pk is not None:
        return int(previous.running_run_pk)
    return 0


def _abandon(session: Session, run_pk: int, now: datetime) -> None:
    session.execute(
        update(JobRun)
        .where(JobRun.id == run_pk, JobRun.outcome == RunOutcome.RUNNING)
        .values(
            outcome=RunOutcome.FAILED,
            finished_at=now,
            error="the run was abandoned: the process running it stopped before "
            "it finished",
            diagnosis={
                "id": "run-abandoned",
                "step": "run",
                "cause": "The process that ran this job stopped (it was killed or "
                "the machine restarted) before the run finished.",
                "fix": "Check the service's log around the run's start time; run "
                "the job again with 'postroom job run NAME' if its email is needed.",
                "error": None,
            },
        )
        .execution_options(synchronize_session=False)
    )
    log.warning("run abandoned by a stopped process", extra={"run": run_pk})


def start_run(
    session: Session,
    job: Job,
    *,
    owner: str,
    now: datetime,
    lease: float,
    trigger: RunTrigger,
    scheduled_for: datetime | None,
) -> ClaimedRun | None:
    """Take the job's lease and record a running run; None if one is in progress."""
    abandoned = _take_lease(session, job.id, owner, now, lease)
    if abandoned is None:
        return None
    if abandoned:
        _abandon(session, abandoned, now)
    run = JobRun(
        job_pk=job.id,
        job_name=job.name,
        client=job.client,
        trigger=trigger,
        scheduled_for=scheduled_for,
        started_at=now,
        outcome=RunOutcome.RUNNING,
        worker=owner,
    )
    session.add(run)
    session.flush()
    session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(running_run_pk=run.id)
        .execution_options(synchronize_session=False)
    )
    return ClaimedRun(
        run_pk=run.id,
        job=JobSnapshot.of(job),
        trigger=trigger,
        scheduled_for=scheduled_for,
        started_at=now,
        owner=owner,
    )


def start_manual_run(
    sessions: sessionmaker[Session],
    name: str,
    *,
    owner: str,
    now: datetime,
    lease: float,
) -> ClaimedRun:
    """Start a run of ``name`` now; ConflictError if one is already running."""
    with transaction(sessions) as session:
        # The lease UPDATE comes first, so on SQLite this transaction takes
        # the write lock before it reads anything.
        session.execute(
            update(Job)
            .where(Job.name == name)
            .values(updated_at=Job.updated_at)
            .execution_options(synchronize_session=False)
        )
        job = session.scalars(select(Job).where(Job.name == name)).one_or_none()
        if job is None:
            raise NotFoundError(f"no job named {name!r}", field="name")
        claimed = start_run(
            session,
            job,
            owner=owner,
            now=now,
            lease=lease,
            trigger=RunTrigger.MANUAL,
            scheduled_for=None,
        )
        if claimed is None:
            running = (
                session.get(JobRun, job.running_run_pk) if job.running_run_pk else None
            )
            since = (
                f", started {running.started_at:%Y-%m-%d %H:%M:%S} UTC"
                if running is not None and running.started_at
                else ""
            )
            raise ConflictError(
                f"job {name!r} is already running (run {job.running_run_pk}{since}); "
                "a job never runs twice at once, so wait for that run to finish",
                field="name",
            )
        return claimed


def record_run(
    session: Session,
    job: Job,
    *,
    outcome: RunOutcome,
    scheduled_for: datetime,
    now: datetime,
    reason: str,
    diagnosis: dict[str, Any],
    worker: str,
) -> None:
    """Record a slot that did not run (skipped or missed) with the reason."""
    session.execute(
        insert(JobRun).values(
            job_pk=job.id,
            job_name=job.name,
            client=job.client,
            trigger=RunTrigger.SCHEDULE,
            scheduled_for=scheduled_for,
            started_at=None,
            finished_at=now,
            outcome=outcome,
            rows=None,
            error=reason,
            diagnosis=diagnosis,
            worker=worker,
        )
    )


def finish_run(
    session: Session,
    claimed: ClaimedRun,
    outcome: RunOutcome,
    *,
    now: datetime,
    rows: int | None = None,
    error: str | None = None,
    diagnosis: dict[str, Any] | None = None,
    message_pks: Iterable[int] = (),
) -> None:
    """Record how a run ended, link its messages and release the job's lease."""
    session.execute(
        update(JobRun)
        .where(JobRun.id == claimed.run_pk)
        .values(
            outcome=outcome,
            finished_at=now,
            rows=rows,
            error=error,
            diagnosis=diagnosis,
        )
        .execution_options(synchronize_session=False)
    )
    links = [
        {"run_pk": claimed.run_pk, "message_pk": message_pk}
        for message_pk in message_pks
    ]
    if links:
        session.execute(insert(JobRunMessage), links)
    session.execute(
        update(Job)
        .where(Job.id == claimed.job.pk, Job.run_lease_owner == claimed.owner)
        .values(run_lease_owner=None, run_lease_expires_at=None, running_run_pk=None)
        .execution_options(synchronize_session=False)
    )


def recover_abandoned(sessions: sessionmaker[Session], now: datetime) -> int:
    """Fail the runs whose lease expired and free their jobs; return how many."""
    with transaction(sessions) as session:
        expired = list(
            session.execute(
                select(Job.id, Job.running_run_pk).where(
                    Job.run_lease_owner.is_not(None), Job.run_lease_expires_at <= now
                )
            )
        )
        for job_pk, run_pk in expired:
            if run_pk is not None:
                _abandon(session, run_pk, now)
            session.execute(
                update(Job)
                .where(Job.id == job_pk, Job.run_lease_expires_at <= now)
                .values(
                    run_lease_owner=None, run_lease_expires_at=None, running_run_pk=None
                )
                .execution_options(synchronize_session=False)
            )
        return len(expired)
