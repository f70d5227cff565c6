"""Options shared by `postroom job create` and `job update`, and the input they make."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from postroom.errors import InvalidInputError
from postroom.schedule.jobs import JobInput

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The job's name.")]


# Options shared by create and update; None means "not given".
CronOption = Annotated[
    str | None,
    typer.Option("--cron", help="Five-field cron expression, e.g. '0 7 * * 1-5'."),
]
AtOption = Annotated[
    str | None,
    typer.Option(
        "--at", help="Run once at this local date and time: 2026-05-01T09:00."
    ),
]
TimeZoneOption = Annotated[
    str | None,
    typer.Option("--tz", help="IANA time zone of the schedule (default UTC)."),
]
ReportOption = Annotated[
    str | None,
    typer.Option(
        "--report",
        help="sql (default with --query), schedule-list or schedule-history.",
    ),
]
DataSourceOption = Annotated[
    str | None, typer.Option("--data-source", help="Configured data source name.")
]
QueryOption = Annotated[
    str | None, typer.Option("--query", help="The SELECT statement of a sql report.")
]
QueryFileOption = Annotated[
    Path | None, typer.Option("--query-file", help="Read the SELECT from this file.")
]
TitleOption = Annotated[
    str | None, typer.Option("--title", help="Title of a sql report.")
]
RowLimitOption = Annotated[
    int | None, typer.Option("--row-limit", help="Most rows a sql report may return.")
]
TimeLimitOption = Annotated[
    float | None,
    typer.Option("--time-limit", help="Seconds a sql report may take."),
]
PeriodOption = Annotated[
    int | None,
    typer.Option(
        "--period-hours", help="schedule-history: hours before each run (default 24)."
    ),
]
HistoryJobOption = Annotated[
    str | None, typer.Option("--history-job", help="schedule-history: only this job.")
]
ReportClientOption = Annotated[
    str | None,
    typer.Option("--report-client", help="Built-in reports: only this client."),
]
HistoryOutcomeOption = Annotated[
    str | None,
    typer.Option("--history-outcome", help="schedule-history: only this outcome."),
]
FormatOption = Annotated[
    str | None,
    typer.Option(
        "--format", help="html (inline table), csv, xlsx or pdf (default csv)."
    ),
]
ToOption = Annotated[
    list[str] | None, typer.Option("--to", help="Recipient; repeat for more.")
]
CcOption = Annotated[
    list[str] | None, typer.Option("--cc", help="Cc recipient; repeat for more.")
]
BccOption = Annotated[
    list[str] | None, typer.Option("--bcc", help="Bcc recipient; repeat for more.")
]
SubjectOption = Annotated[
    str | None,
    typer.Option(
        "--subject", help="Subject template, e.g. '{{ job }} {{ run_date }}'."
    ),
]
BodyOption = Annotated[str | None, typer.Option("--body", help="Body template.")]
BodyFileOption = Annotated[
    Path | None, typer.Option("--body-file", help="Read the body template from a file.")
]
ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", help="Email profile (default DefaultDeliveryProfile)."),
]
ClientOption = Annotated[str | None, typer.Option("--client", help="The job's client.")]
ActiveOption = Annotated[
    bool | None, typer.Option("--active/--inactive", help="Whether the job runs.")
]
OnEmptyOption = Annotated[
    str | None,
    typer.Option("--on-empty", help="send (default) or skip when the report is empty."),
]


def read_file_option(path: Path | None, option: str) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(
            f"cannot read {path}: {exc.strerror}", field=option
        ) from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{path} is not UTF-8 text; save it as UTF-8", field=option
        ) from exc


def merge_report(
    current: dict[str, Any] | None,
    kind: str | None,
    values: dict[str, Any],
) -> dict[str, Any] | None:
    """Merge report options into the current report, or start a new one."""
    given = {key: value for key, value in values.items() if value is not None}
    if kind is None and not given:
        return None
    if kind is None and current is not None:
        kind = current["kind"]
    elif kind is None and "query" in given:
        kind = "sql"
    if kind is None:
        raise InvalidInputError(
            "is required: sql (with --data-source and --query), schedule-list or "
            "schedule-history",
            field="report",
        )
    base = dict(current) if current and current.get("kind") == kind else {}
    base["kind"] = kind
    base.update(given)
    return base


def job_input(
    *,
    current_report: dict[str, Any] | None,
    name: str | None,
    cron: str | None,
    at: str | None,
    tz: str | None,
    report: str | None,
    report_values: dict[str, Any],
    fmt: str | None,
    to: list[str] | None,
    cc: list[str] | None,
    bcc: list[str] | None,
    subject: str | None,
    body: str | None,
    profile: str | None,
    client: str | None,
    active: bool | None,
    on_empty: str | None,
) -> JobInput:
    values: dict[str, Any] = {
        "name": name,
        "cron": cron,
        "run_at": at,
        "time_zone": tz,
        "report": merge_report(current_report, report, report_values),
        "format": fmt,
        "to": to,
        "cc": cc,
        "bcc": bcc,
        "subject": subject,
        "body": body,
        "profile": profile,
        "client": client,
        "is_active": active,
        "on_empty": on_empty,
    }
    return JobInput.model_validate(
        {key: value for key, value in values.items() if value is not None}
    )
