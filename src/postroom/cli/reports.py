"""`postroom report ...`: the Schedule List and Schedule History reports."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from datetime import UTC
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic_core import to_jsonable_python

from postroom.cli.common import EXIT_INVALID, fail, print_json, print_table, runtime
from postroom.clock import utcnow
from postroom.domain.scheduling import ReportFormat
from postroom.reports.builtin import (
    SCHEDULE_HISTORY_COLUMNS,
    check_outcome_filter,
    history_rows,
    parse_point_in_time,
    schedule_history,
    schedule_history_table,
    schedule_list,
    schedule_list_table,
)
from postroom.reports.table import Table
from postroom.reports.writers import write_report

app = typer.Typer(
    help="The built-in reports about scheduled jobs.", no_args_is_help=True
)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"
    PDF = "pdf"


FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", help="table (default), json, csv, xlsx or pdf."),
]
OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="Write to this file instead of standard output."
    ),
]


def _write(table: Table, fmt: OutputFormat, output: Path | None) -> None:
    binary = fmt in (OutputFormat.XLSX, OutputFormat.PDF)
    if output is None and binary and sys.stdout.isatty():
        fail(
            f"{fmt.value.upper()} is binary; give --output FILE or redirect standard "
            "output to a file",
            EXIT_INVALID,
        )
    folder = Path(tempfile.mkdtemp(prefix="postroom-report-"))
    try:
        report = write_report(
            table, ReportFormat(fmt.value), folder / f"report.{fmt.value}"
        )
        if output is not None:
            try:
                shutil.copyfile(report.path, output)
            except OSError as exc:
                _output_failed(output, exc)
            typer.echo(f"wrote {report.rows} rows to {output}", err=True)
            return
        sys.stdout.flush()
        stdout = sys.stdout.buffer
        with report.path.open("rb") as source:
            shutil.copyfileobj(source, stdout)
        stdout.flush()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _emit_json(data: Any, output: Path | None) -> None:
    if output is None:
        print_json(data)
        return
    text = json.dumps(to_jsonable_python(data), indent=2, ensure_ascii=False)
    try:
        output.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        _output_failed(output, exc)
    typer.echo(f"wrote {output}", err=True)


def _output_failed(output: Path, exc: OSError) -> NoReturn:
    shown = str(output) if len(str(output)) <= 80 else str(output)[:80] + "..."
    fail(
        f"output: cannot write {shown!r} ({exc.strerror or exc}); give a writable "
        "file path in an existing folder",
        EXIT_INVALID,
    )


@app.command("schedule-list")
def schedule_list_command(
    client: Annotated[
        str | None, typer.Option("--client", help="Only this client's jobs.")
    ] = None,
    fmt: FormatOption = OutputFormat.TABLE,
    output: OutputOption = None,
) -> None:
    """List every job: client, schedule in words and cron, time zone, next run,
    last run and outcome, recipients, profile, active."""
    now = utcnow()
    with runtime() as opened, opened.sessions() as session:
        if fmt == OutputFormat.JSON:
            _emit_json(schedule_list(session, now, client), output)
        elif fmt == OutputFormat.TABLE:
            table = schedule_list_table(session, now, client)
            columns = [
                "job",
                "client",
                "schedule",
                "cron",
                "time_zone",
                "next_run_local",
                "last_run_utc",
                "last_outcome",
                "recipients",
                "profile",
                "active",
            ]
            rows = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
            print_table(rows, columns)
        else:
            _write(schedule_list_table(session, now, client), fmt, output)


@app.command("schedule-history")
def schedule_history_command(
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Start: a duration before now (24h, 7d, 2w), a date or a date-time "
            "(UTC unless an offset is given).",
        ),
    ],
    until: Annotated[
        str | None, typer.Option("--until", help="End, exclusive (default now).")
    ] = None,
    job: Annotated[str | None, typer.Option("--job", help="Only this job.")] = None,
    client: Annotated[
        str | None, typer.Option("--client", help="Only this client's runs.")
    ] = None,
    outcome: Annotated[
        str | None,
        typer.Option(
            "--outcome",
            help="running, sending, held, succeeded, failed (report or delivery), "
            "skipped or missed.",
        ),
    ] = None,
    fmt: FormatOption = OutputFormat.TABLE,
    output: OutputOption = None,
) -> None:
    """List every run in the period, with the delivery result of each email it sent."""
    now = utcnow()
    with runtime() as opened, opened.sessions() as session:
        start = parse_point_in_time(since, now, "since")
        end = parse_point_in_time(until, now, "until") if until else now.astimezone(UTC)
        check_outcome_filter(outcome)
        if fmt == OutputFormat.JSON:
            runs = list(
                schedule_history(
                    session, start, end, job=job, client=client, outcome=outcome
                )
            )
            _emit_json({"since": start, "until": end, "runs": runs}, output)
        elif fmt == OutputFormat.TABLE:
            rows = []
            for view in schedule_history(
                session, start, end, job=job, client=client, outcome=outcome
            ):
                for row in history_rows(view):
                    rows.append(dict(zip(SCHEDULE_HISTORY_COLUMNS, row, strict=True)))
            print_table(
                rows,
                [
                    "run",
                    "job",
                    "started_at_utc",
                    "outcome",
                    "failed_in",
                    "rows",
                    "recipient",
                    "reply_code",
                    "reply_text",
                    "error",
                ],
            )
        else:
            table = schedule_history_table(
                session, start, end, job=job, client=client, outcome=outcome
            )
            _write(table, fmt, output)
