"""Scheduled jobs: validation, storage and the schedule each one follows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from postroom.config import Settings
from postroom.domain.profiles import find_profile
from postroom.domain.scheduling import (
    DEFAULT_JOB_PROFILE,
    Job,
    JobRun,
    OnEmpty,
    ReportFormat,
)
from postroom.domain.validation import (
    check_length,
    check_single_line,
    column_length,
    parse_mailbox,
)
from postroom.errors import ConflictError, InvalidInputError, NotFoundError
from postroom.reports.sql import check_data_source, check_query
from postroom.schedule.cron import (
    CronSchedule,
    OnceSchedule,
    Schedule,
    check_time_zone,
)
from postroom.schedule.templates import DEFAULT_BODY, DEFAULT_SUBJECT, check_template
from postroom.templates.render import RenderLimits

# Maximum period, in hours, of a schedule-history report run by a job.
MAX_HISTORY_HOURS = 24 * 366
RUN_OUTCOME_FILTERS = (
    "running",
    "sending",
    "held",
    "succeeded",
    "failed",
    "skipped",
    "missed",
)


class SqlReport(BaseModel):
    """A SELECT run read-only against a configured data source."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["sql"]
    data_source: str
    query: str
    title: str | None = None
    row_limit: int | None = Field(default=None, ge=1)
    time_limit_seconds: float | None = Field(default=None, gt=0)


class ScheduleListReport(BaseModel):
    """The built-in list of jobs."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["schedule-list"]
    client: str | None = None


class ScheduleHistoryReport(BaseModel):
    """The built-in history of runs over the hours before each run."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["schedule-history"]
    period_hours: int = Field(default=24, ge=1, le=MAX_HISTORY_HOURS)
    job: str | None = None
    client: str | None = None
    outcome: str | None = None


ReportSpec = Annotated[
    SqlReport | ScheduleListReport | ScheduleHistoryReport,
    Field(discriminator="kind"),
]


class JobInput(BaseModel):
    """Fields of a job as a caller sends them; unset fields are unchanged."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    client: str | None = None
    cron: str | None = Field(
        default=None, description="Five-field cron expression, in time_zone"
    )
    run_at: str | None = Field(
        default=None,
        description="A single run, as a local date and time in time_zone: "
        "2026-05-01T09:00",
    )
    time_zone: str | None = Field(default=None, description="IANA name, default UTC")
    report: ReportSpec | None = None
    format: ReportFormat | None = None
    to: list[str] | None = None
    cc: list[str] | None = None
    bcc: list[str] | None = None
    subject: str | None = None
    body: str | None = None
    profile: str | None = None
    is_active: bool | None = None
    on_empty: OnEmpty | None = None


def schedule_of(job: Job) -> Schedule:
    """Return the schedule a stored job follows."""
    zone = check_time_zone(job.time_zone)
    if job.cron:
        return CronSchedule(job.cron, zone)
    assert job.run_at is not None
    return OnceSchedule(datetime.fromisoformat(job.run_at), zone)


def parse_run_at(value: str, field: str = "run_at") -> datetime:
    """Parse a local date and time without an offset."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidInputError(
            f"{value!r} is not a date and time; use YYYY-MM-DDTHH:MM, for example "
            "2026-05-01T09:00",
            field=field,
        ) from exc
    if parsed.tzinfo is not None:
        raise InvalidInputError(
            "must be a local time without an offset, because the job's time_zone "
            "gives its place",
            field=field,
        )
    return parsed.replace(microsecond=0)


def _check_name(value: str | None) -> str:
    value = check_single_line((value or "").strip(), "name")
    if not value:
        raise InvalidInputError("is required", field="name")
    check_length(value, "name", column_length(Job.name))
    if "/" in value:
        raise InvalidInputError("must not contain '/'", field="name")
    return value


def _check_addresses(values: list[str], field: str) -> list[str]:
    return [
        str(parse_mailbox(value, f"{field}[{index}]"))
        for index, value in enumerate(values)
    ]


def _check_report(
    spec: SqlReport | ScheduleListReport | ScheduleHistoryReport, settings: Settings
) -> dict[str, Any]:
    if isinstance(spec, SqlReport):
        check_data_source(spec.data_source, settings.data_sources, "report.data_source")
        query = check_query(spec.query)
        if spec.row_limit is not None and spec.row_limit > settings.report_max_rows:
            raise InvalidInputError(
                f"must be at most {settings.report_max_rows:,}, the report_max_rows "
                "setting",
                field="report.row_limit",
            )
        if (
            spec.time_limit_seconds is not None
            and spec.time_limit_seconds > settings.report_max_seconds
        ):
            raise InvalidInputError(
                f"must be at most {settings.report_max_seconds:g}, the "
                "report_max_seconds setting",
                field="report.time_limit_seconds",
            )
        if spec.title is not None:
            check_single_line(spec.title, "report.title")
        return spec.model_copy(update={"query": query}).model_dump(exclude_none=True)
    if (
        isinstance(spec, ScheduleHistoryReport)
        and spec.outcome is not None
        and spec.outcome not in RUN_OUTCOME_FILTERS
    ):
        raise InvalidInputError(
            f"must be one of {', '.join(RUN_OUTCOME_FILTERS)}",
            field="report.outcome",
        )
    return spec.model_dump(exclude_none=True)


def _schedule_from(
    state: dict[str, Any], now: datetime, check_future: bool
) -> Schedule:
    zone = check_time_zone(state["time_zone"] or "")
    if state["cron"] and state["run_at"]:
        raise InvalidInputError("give either cron or run_at, not both", field="run_at")
    if state["cron"]:
        schedule: Schedule = CronSchedule(state["cron"], zone)
        # Raises when the expression can never fire.
        schedule.next_after(now)
        return schedule
    if not state["run_at"]:
        raise InvalidInputError(
            "a schedule is required: a cron expression such as '0 7 * * 1-5', or "
            "run_at for a single run",
            field="cron",
        )
    once = OnceSchedule(parse_run_at(state["run_at"]), zone)
    if check_future and once.at().utc <= now:
        raise InvalidInputError(
            f"{state['run_at']} in {zone.key} is in the past; give a later time",
            field="run_at",
        )
    return once


def _normalize(
    session: Session,
    settings: Settings,
    state: dict[str, Any],
    now: datetime,
    schedule_changed: bool,
) -> tuple[dict[str, Any], Schedule]:
    state = dict(state)
    state["name"] = _check_name(state["name"])
    client = (state["client"] or "").strip()
    state["client"] = check_single_line(client, "client") or None
    if state["client"] is not None:
        check_length(state["client"], "client", column_length(Job.client))

    if state["cron"] is not None:
        state["cron"] = state["cron"].strip() or None
    if state["run_at"] is not None:
        state["run_at"] = state["run_at"].strip() or None
    state["time_zone"] = (state["time_zone"] or "UTC").strip()
    schedule = _schedule_from(state, now, check_future=schedule_changed)
    if isinstance(schedule, CronSchedule):
        state["cron"] = check_length(
            schedule.expression, "cron", column_length(Job.cron)
        )
    else:
        state["run_at"] = schedule.run_at.isoformat()

    if state["report"] is None:
        raise InvalidInputError(
            'is required, for example {"kind": "sql", "data_source": '
            '"sales", "query": "SELECT ..."}',
            field="report",
        )
    state["report"] = _check_report(state["report"], settings)

    for kind in ("to", "cc", "bcc"):
        state[kind] = _check_addresses(state[kind] or [], kind)
    if not (state["to"] or state["cc"] or state["bcc"]):
        raise InvalidInputError("at least one recipient is required", field="to")

    limits = RenderLimits.from_settings(settings)
    state["subject"] = check_template(state["subject"], "subject", limits)
    state["body"] = check_template(state["body"], "body", limits)

    profile = (state["profile"] or "").strip() or DEFAULT_JOB_PROFILE
    if find_profile(session, profile) is None:
        raise InvalidInputError(
            f"no email profile named {profile!r}; create it first, or leave it "
            f"empty to use {DEFAULT_JOB_PROFILE}",
            field="profile",
        )
    state["profile"] = profile
    return state, schedule


def _defaults() -> dict[str, Any]:
    return {
        "name": None,
        "client": None,
        "cron": None,
        "run_at": None,
        "time_zone": "UTC",
        "report": None,
        "format": ReportFormat.CSV,
        "to": [],
        "cc": [],
        "bcc": [],
        "subject": DEFAULT_SUBJECT,
        "body": DEFAULT_BODY,
        "profile": DEFAULT_JOB_PROFILE,
        "is_active": True,
        "on_empty": OnEmpty.SEND,
    }


def _given(data: JobInput) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in data.model_fields_set:
        value = getattr(data, name)
        if value is None and name not in ("client", "cron", "run_at"):
            continue
        values[name] = value
    return values


def _current(job: Job) -> dict[str, Any]:
    return {
        "name": job.name,
        "client": job.client,
        "cron": job.cron,
        "run_at": job.run_at,
        "time_zone": job.time_zone,
        "report": _report_model(job.report),
        "format": ReportFormat(job.format),
        "to": list(job.to_addresses),
        "cc": list(job.cc_addresses),
        "bcc": list(job.bcc_addresses),
        "subject": job.subject_template,
        "body": job.body_template,
        "profile": job.profile_name,
        "is_active": job.is_active,
        "on_empty": OnEmpty(job.on_empty),
    }


def _report_model(
    report: dict[str, Any],
) -> SqlReport | ScheduleListReport | ScheduleHistoryReport:
    kind = report.get("kind")
    if kind == "sql":
        return SqlReport.model_validate(report)
    if kind == "schedule-history":
        return ScheduleHistoryReport.model_validate(report)
    return ScheduleListReport.model_validate(report)


def _apply(job: Job, state: dict[str, Any]) -> None:
    job.name = state["name"]
    job.client = state["client"]
    job.cron = state["cron"]
    job.run_at = state["run_at"]
    job.time_zone = state["time_zone"]
    job.report = state["report"]
    job.format = ReportFormat(state["format"])
    job.to_addresses = state["to"]
    job.cc_addresses = state["cc"]
    job.bcc_addresses = state["bcc"]
    job.subject_template = state["subject"]
    job.body_template = state["body"]
    job.profile_name = state["profile"]
    job.is_active = bool(state["is_active"])
    job.on_empty = OnEmpty(state["on_empty"])


def _next_run(job: Job, schedule: Schedule, now: datetime) -> datetime | None:
    if not job.is_active:
        return None
    occurrence = schedule.next_after(now)
    return occurrence.utc if occurrence is not None else None


def find_job(session: Session, name: str) -> Job | None:
    return session.scalars(select(Job).where(Job.name == name)).one_or_none()


def get_job(session: Session, name: str) -> Job:
    job = find_job(session, name)
    if job is None:
        raise NotFoundError(f"no job named {name!r}", field="name")
    return job


def list_jobs(session: Session, client: str | None = None) -> list[Job]:
    query = select(Job).order_by(Job.name)
    if client is not None:
        query = query.where(Job.client == client)
    return list(session.scalars(query))


def create_job(
    session: Session, settings: Settings, data: JobInput, now: datetime
) -> Job:
    if not data.name:
        raise InvalidInputError("is required", field="name")
    state, schedule = _normalize(
        session, settings, _defaults() | _given(data), now, schedule_changed=True
    )
    if find_job(session, state["name"]) is not None:
        raise ConflictError(
            f"a job named {state['name']!r} already exists; choose another name",
            field="name",
        )
    job = Job()
    _apply(job, state)
    job.next_run_at = _next_run(job, schedule, now)
    session.add(job)
    session.flush()
    return job


def update_job(
    session: Session, settings: Settings, name: str, data: JobInput, now: datetime
) -> Job:
    """Apply the given fields; the next run is recomputed if the schedule changed."""
    job = get_job(session, name)
    given = _given(data)
    # Setting one kind of schedule replaces the other.
    if given.get("cron"):
        given.setdefault("run_at", None)
    if given.get("run_at"):
        given.setdefault("cron", None)
    current = _current(job)
    schedule_changed = any(
        key in given and given[key] != current[key]
        for key in ("cron", "run_at", "time_zone", "is_active")
    )
    state, schedule = _normalize(
        session, settings, current | given, now, schedule_changed=schedule_changed
    )
    if state["name"] != job.name and find_job(session, state["name"]) is not None:
        raise ConflictError(
            f"a job named {state['name']!r} already exists; choose another name",
            field="name",
        )
    if state["name"] != job.name:
        # The history follows the job under its new name.
        session.execute(
            update(JobRun).where(JobRun.job_pk == job.id).values(job_name=state["name"])
        )
    _apply(job, state)
    if schedule_changed:
        job.next_run_at = _next_run(job, schedule, now)
    session.flush()
    return job


def delete_job(session: Session, name: str, now: datetime) -> None:
    job = get_job(session, name)
    if job.run_lease_owner is not None and (
        job.run_lease_expires_at is not None and job.run_lease_expires_at > now
    ):
        raise ConflictError(
            f"job {name!r} is running (run {job.running_run_pk}); delete it when "
            "the run has finished",
            field="name",
        )
    session.delete(job)
