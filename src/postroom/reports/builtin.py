"""The built-in reports: the Schedule List and the Schedule History.

Each is available as JSON-ready dictionaries (for the API and ``--format
json``) and as a Table for the CSV, XLSX, PDF and HTML writers. The history
streams its runs in batches, so a long period does not need memory in
proportion to its length.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import MAXYEAR, UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from postroom.domain.scheduling import JobRun
from postroom.errors import InvalidInputError
from postroom.reports.table import Table
from postroom.schedule.jobs import RUN_OUTCOME_FILTERS, list_jobs
from postroom.schedule.views import job_views, run_views

SCHEDULE_LIST_COLUMNS = [
    "job",
    "client",
    "active",
    "schedule",
    "cron",
    "time_zone",
    "next_run_local",
    "next_run_utc",
    "last_run_utc",
    "last_outcome",
    "last_failed_in",
    "recipients",
    "profile",
    "report",
    "format",
]

SCHEDULE_HISTORY_COLUMNS = [
    "run",
    "job",
    "client",
    "trigger",
    "scheduled_for_utc",
    "started_at_utc",
    "finished_at_utc",
    "outcome",
    "failed_in",
    "delivery",
    "rows",
    "error",
    "cause",
    "fix",
    "message",
    "message_id",
    "message_status",
    "recipient",
    "recipient_status",
    "reply_code",
    "reply_text",
]

# Runs read from the database per round trip.
_BATCH = 500
_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_point_in_time(text: str, now: datetime, field: str) -> datetime:
    """Parse '24h', '7d', '30m', '2w' (before ``now``), a date or a date-time.

    A date or date-time without an offset is read as UTC.
    """
    value = text.strip()
    relative = _RELATIVE.match(value.lower())
    if relative:
        unit = relative[2]
        try:
            return now - timedelta(**{_UNITS[unit]: int(relative[1])})
        except (OverflowError, ValueError) as exc:
            # OverflowError: before year 1 or beyond timedelta's range;
            # ValueError: more digits than int() converts.
            raise InvalidInputError(
                f"{_shorten(text)!r} reaches back before the year 1; give a shorter "
                "duration, such as 52w, or a date",
                field=field,
            ) from exc
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInputError(
            f"{_shorten(text)!r} is not a time; use a duration before now (24h, 7d, "
            "30m, 2w), a date (2026-03-01) or a date and time (2026-03-01T07:00, "
            "UTC unless an offset is given)",
            field=field,
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidInputError(
            f"{_shorten(text)!r} falls outside the years 1 to {MAXYEAR} in UTC; "
            "give a time within them",
            field=field,
        ) from exc


def _shorten(text: str, keep: int = 40) -> str:
    return text if len(text) <= keep else text[:keep] + "..."


def _utc_text(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _recipients(view: dict[str, Any]) -> str:
    parts = []
    for kind in ("to", "cc", "bcc"):
        if view[kind]:
            parts.append(f"{kind}: {', '.join(view[kind])}")
    return "; ".join(parts)


def _report_name(report: dict[str, Any]) -> str:
    if report.get("kind") == "sql":
        return f"sql ({report.get('data_source')})"
    return str(report.get("kind"))


def schedule_list(
    session: Session, now: datetime, client: str | None = None
) -> list[dict[str, Any]]:
    """List every job with its schedule, next run, last run and outcome, recipients."""
    result = []
    for view in job_views(session, list_jobs(session, client), now):
        last = view["last_run"]
        result.append(
            {
                "job": view["name"],
                "client": view["client"],
                "active": view["is_active"],
                "schedule": view["schedule"],
                "cron": view["cron"],
                "run_at": view["run_at"],
                "time_zone": view["time_zone"],
                "next_run_local": view["next_run_local"],
                "next_run_utc": _utc_text(view["next_run_at"]),
                "last_run_utc": _utc_text(
                    (last["started_at"] or last["scheduled_for"]) if last else None
                ),
                "last_outcome": last["outcome"] if last else None,
                "last_failed_in": last["failed_in"] if last else None,
                "last_run": last,
                "to": view["to"],
                "cc": view["cc"],
                "bcc": view["bcc"],
                "profile": view["profile"],
                "report": view["report"],
                "format": view["format"],
            }
        )
    return result


def schedule_list_table(
    session: Session, now: datetime, client: str | None = None
) -> Table:
    rows = [
        [
            item["job"],
            item["client"],
            item["active"],
            item["schedule"],
            item["cron"] or f"once at {item['run_at']}",
            item["time_zone"],
            item["next_run_local"],
            item["next_run_utc"],
            item["last_run_utc"],
            item["last_outcome"],
            item["last_failed_in"],
            _recipients(item),
            item["profile"],
            _report_name(item["report"]),
            item["format"],
        ]
        for item in schedule_list(session, now, client)
    ]
    return Table(title="Schedule List", columns=SCHEDULE_LIST_COLUMNS, rows=rows)


def check_outcome_filter(outcome: str | None, field: str = "outcome") -> None:
    if outcome is not None and outcome not in RUN_OUTCOME_FILTERS:
        raise InvalidInputError(
            f"must be one of {', '.join(RUN_OUTCOME_FILTERS)}", field=field
        )


def schedule_history(
    session: Session,
    since: datetime,
    until: datetime,
    *,
    job: str | None = None,
    client: str | None = None,
    outcome: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield every run in [since, until) as a run view, oldest first.

    A run's time is its start, or its slot when it never started (missed,
    skipped). ``outcome`` filters on the combined outcome, so ``failed``
    includes runs whose email the provider refused.
    """
    check_outcome_filter(outcome)
    if until <= since:
        raise InvalidInputError("must be later than since", field="until")
    return _history(session, since, until, job=job, client=client, outcome=outcome)


def _history(
    session: Session,
    since: datetime,
    until: datetime,
    *,
    job: str | None,
    client: str | None,
    outcome: str | None,
) -> Iterator[dict[str, Any]]:
    at = func.coalesce(JobRun.started_at, JobRun.scheduled_for)
    query = select(JobRun).where(at >= since, at < until).order_by(JobRun.id)
    if job is not None:
        query = query.where(JobRun.job_name == job)
    if client is not None:
        query = query.where(JobRun.client == client)
    last_id = 0
    while True:
        batch = list(session.scalars(query.where(JobRun.id > last_id).limit(_BATCH)))
        if not batch:
            return
        last_id = batch[-1].id
        for view in run_views(session, batch):
            if outcome is None or view["outcome"] == outcome:
                yield view


def history_rows(view: dict[str, Any]) -> Iterator[list[Any]]:
    """Flatten one run into a row per recipient of each message it queued."""
    diagnosis = view["diagnosis"] or {}
    run_cells = [
        view["id"],
        view["job"],
        view["client"],
        view["trigger"],
        _utc_text(view["scheduled_for"]),
        _utc_text(view["started_at"]),
        _utc_text(view["finished_at"]),
        view["outcome"],
        view["failed_in"],
        view["delivery"],
        view["rows"],
        view["error"],
        diagnosis.get("cause"),
        diagnosis.get("fix"),
    ]
    emitted = False
    for message in view["messages"]:
        for recipient in message["recipients"]:
            emitted = True
            yield [
                *run_cells,
                message["id"],
                message["message_id"],
                message["status"],
                recipient["address"],
                recipient["status"],
                recipient["reply_code"],
                recipient["reply_text"],
            ]
    if not emitted:
        yield [*run_cells, None, None, None, None, None, None, None]


def schedule_history_table(
    session: Session,
    since: datetime,
    until: datetime,
    *,
    job: str | None = None,
    client: str | None = None,
    outcome: str | None = None,
) -> Table:
    views = schedule_history(
        session, since, until, job=job, client=client, outcome=outcome
    )
    rows = (row for view in views for row in history_rows(view))
    return Table(title="Schedule History", columns=SCHEDULE_HISTORY_COLUMNS, rows=rows)
