"""Jobs and runs as the API, the CLI and the built-in reports show them.

A run's recorded outcome records whether its report was produced and its email
queued. Delivery happens later, in the worker, so what became of the email
is read from the messages the run queued: their status and each recipient's
reply. The two combine into the ``outcome`` shown to operators, so a run
whose report succeeded but whose email was refused shows as ``failed`` with
``failed_in`` = ``delivery``, never as a success.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from postroom.domain.models import MessageStatus, OutboxMessage, RecipientStatus
from postroom.domain.scheduling import Job, JobRun, JobRunMessage, RunOutcome
from postroom.errors import InvalidInputError, NotFoundError
from postroom.schedule.cron import CronSchedule, Occurrence, check_time_zone, upcoming
from postroom.schedule.jobs import schedule_of

# Delivery of the email(s) a run queued, as read from the outbox.
DELIVERY_NOT_SENT = "not_sent"
DELIVERY_PENDING = "pending"
DELIVERY_HELD = "held"
DELIVERY_DELIVERED = "delivered"
DELIVERY_FAILED = "failed"

_FAILED_MESSAGES = {
    MessageStatus.FAILED,
    MessageStatus.PARTIALLY_SENT,
    MessageStatus.CANCELLED,
}
_PENDING_MESSAGES = {MessageStatus.QUEUED, MessageStatus.SENDING}


def delivery_of(messages: Sequence[OutboxMessage]) -> str:
    """Return the delivery result of a run's messages, worst first."""
    if not messages:
        return DELIVERY_NOT_SENT
    statuses = {message.status for message in messages}
    refused = any(
        recipient.status == RecipientStatus.FAILED
        for message in messages
        for recipient in message.recipients
    )
    if refused or statuses & _FAILED_MESSAGES:
        return DELIVERY_FAILED
    if MessageStatus.HELD in statuses:
        return DELIVERY_HELD
    if statuses & _PENDING_MESSAGES or statuses - {MessageStatus.SENT}:
        # An unknown status counts as not delivered yet, never as delivered.
        return DELIVERY_PENDING
    return DELIVERY_DELIVERED


def combined_outcome(run_outcome: str, delivery: str) -> tuple[str, str | None]:
    """Return (outcome, failed_in) as shown to operators."""
    if run_outcome == RunOutcome.FAILED:
        return "failed", "report"
    if run_outcome != RunOutcome.SUCCEEDED:
        return run_outcome, None
    if delivery == DELIVERY_FAILED:
        return "failed", "delivery"
    if delivery == DELIVERY_HELD:
        return "held", None
    if delivery == DELIVERY_PENDING:
        return "sending", None
    return "succeeded", None


def _recipient_view(recipient: Any) -> dict[str, Any]:
    return {
        "address": recipient.address,
        "kind": recipient.kind,
        "status": recipient.status,
        "reply_code": recipient.reply_code,
        "enhanced_status": recipient.enhanced_status,
        "reply_text": recipient.reply_text,
    }


def _message_view(message: OutboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "message_id": message.message_id,
        "status": message.status,
        "profile": message.profile_name,
        "subject": message.subject,
        "size": message.size,
        "held_reason": message.held_reason,
        "sent_at": message.sent_at,
        "provider_queue_id": message.provider_queue_id,
        "attempt_count": message.attempt_count,
        "last_error": message.last_error,
        "recipients": [_recipient_view(recipient) for recipient in message.recipients],
    }


def _delivery_error(
    messages: Sequence[OutboxMessage],
) -> tuple[str | None, dict[str, Any] | None]:
    """Return the provider's refusal and its diagnosis, from the first failure."""
    for message in messages:
        for recipient in message.recipients:
            if recipient.status == RecipientStatus.FAILED:
                # The stored reply text starts with the enhanced status code.
                reply = " ".join(
                    str(part)
                    for part in (recipient.reply_code, recipient.reply_text)
                    if part is not None
                )
                if recipient.reply_code is None:
                    # No reply: the email never reached the provider.
                    error = (
                        f"the email for {recipient.address} could not be handed "
                        f"to the provider: {reply}"
                    )
                else:
                    error = (
                        f"the provider refused the email for {recipient.address}: "
                        f"{reply}"
                    )
                return error, message.last_error
        if message.status in _FAILED_MESSAGES:
            return f"the email was not delivered (message {message.status})", (
                message.last_error
            )
    return None, None


def run_view(run: JobRun, messages: Sequence[OutboxMessage]) -> dict[str, Any]:
    delivery = delivery_of(messages)
    outcome, failed_in = combined_outcome(run.outcome, delivery)
    error, diagnosis = run.error, run.diagnosis
    if failed_in == "delivery":
        error, diagnosis = _delivery_error(messages)
    return {
        "id": run.id,
        "job": run.job_name,
        "client": run.client,
        "trigger": run.trigger,
        "scheduled_for": run.scheduled_for,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "outcome": outcome,
        "failed_in": failed_in,
        "report_outcome": run.outcome,
        "delivery": delivery,
        "rows": run.rows,
        "error": error,
        "diagnosis": diagnosis,
        "worker": run.worker,
        "messages": [_message_view(message) for message in messages],
    }


def run_views(session: Session, runs: Sequence[JobRun]) -> list[dict[str, Any]]:
    """Render runs with their messages, loading the messages in one query."""
    by_run: dict[int, list[OutboxMessage]] = defaultdict(list)
    if runs:
        rows = session.execute(
            select(JobRunMessage.run_pk, OutboxMessage)
            .join(OutboxMessage, OutboxMessage.id == JobRunMessage.message_pk)
            .where(JobRunMessage.run_pk.in_([run.id for run in runs]))
            .options(selectinload(OutboxMessage.recipients))
            .order_by(OutboxMessage.id)
        )
        for run_pk, message in rows:
            by_run[run_pk].append(message)
    return [run_view(run, by_run[run.id]) for run in runs]


def get_run(session: Session, run_pk: int, job_name: str | None = None) -> JobRun:
    run = session.get(JobRun, run_pk)
    if run is None or (job_name is not None and run.job_name != job_name):
        raise NotFoundError(f"no run with id {run_pk}", field="id")
    return run


def recent_runs(session: Session, job: Job, limit: int = 10) -> list[JobRun]:
    return list(
        session.scalars(
            select(JobRun)
            .where(JobRun.job_pk == job.id)
            .order_by(JobRun.id.desc())
            .limit(limit)
        )
    )


def last_runs(session: Session, jobs: Sequence[Job]) -> dict[int, JobRun]:
    """Return the latest run of each job, by job key."""
    if not jobs:
        return {}
    latest = (
        select(func.max(JobRun.id))
        .where(JobRun.job_pk.in_([job.id for job in jobs]))
        .group_by(JobRun.job_pk)
    )
    runs = session.scalars(select(JobRun).where(JobRun.id.in_(latest)))
    return {run.job_pk: run for run in runs if run.job_pk is not None}


def occurrence_view(occurrence: Occurrence) -> dict[str, Any]:
    return {
        "local": occurrence.local.isoformat(),
        "abbreviation": occurrence.local.tzname(),
        "utc": occurrence.utc,
        "note": occurrence.note,
    }


def next_runs_view(
    schedule: Any, time_zone: str, after: datetime, count: int
) -> dict[str, Any]:
    if not 1 <= count <= 100:
        raise InvalidInputError("must be between 1 and 100", field="count")
    return {
        "time_zone": time_zone,
        "schedule": schedule.describe(),
        "cron": schedule.expression if isinstance(schedule, CronSchedule) else None,
        "runs": [occurrence_view(item) for item in upcoming(schedule, after, count)],
    }


def job_view(
    job: Job, last_run: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    schedule = schedule_of(job)
    zone = check_time_zone(job.time_zone)
    running = (
        job.run_lease_owner is not None
        and job.run_lease_expires_at is not None
        and job.run_lease_expires_at > now
    )
    return {
        "name": job.name,
        "client": job.client,
        "cron": job.cron,
        "run_at": job.run_at,
        "time_zone": job.time_zone,
        "schedule": schedule.describe(),
        "report": job.report,
        "format": job.format,
        "to": job.to_addresses,
        "cc": job.cc_addresses,
        "bcc": job.bcc_addresses,
        "subject": job.subject_template,
        "body": job.body_template,
        "profile": job.profile_name,
        "is_active": job.is_active,
        "on_empty": job.on_empty,
        "next_run_at": job.next_run_at,
        "next_run_local": job.next_run_at.astimezone(zone).isoformat()
        if job.next_run_at
        else None,
        "running": running,
        "running_run": job.running_run_pk if running else None,
        "last_run": last_run,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    }


def job_views(
    session: Session, jobs: Sequence[Job], now: datetime
) -> list[dict[str, Any]]:
    latest = last_runs(session, jobs)
    rendered = {view["id"]: view for view in run_views(session, list(latest.values()))}
    return [
        job_view(
            job,
            rendered.get(latest[job.id].id) if job.id in latest else None,
            now,
        )
        for job in jobs
    ]
