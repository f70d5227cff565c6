"""The built-in reports as JSON or as CSV, XLSX and PDF downloads."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask

from postroom.api.deps import RuntimeDep, TokenDep
from postroom.clock import utcnow
from postroom.domain.scheduling import ReportFormat
from postroom.reports.builtin import (
    check_outcome_filter,
    parse_point_in_time,
    schedule_history,
    schedule_history_table,
    schedule_list,
    schedule_list_table,
)
from postroom.reports.table import Table
from postroom.reports.writers import write_report

router = APIRouter(prefix="/api/reports", tags=["reports"])


class DownloadFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"
    PDF = "pdf"


FormatQuery = Annotated[
    DownloadFormat, Query(description="json (default), or a csv, xlsx or pdf download")
]


def _download(table: Table, fmt: DownloadFormat, name: str) -> FileResponse:
    folder = Path(tempfile.mkdtemp(prefix="postroom-download-"))
    try:
        report = write_report(
            table, ReportFormat(fmt.value), folder / f"{name}.{fmt.value}"
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        report.path,
        media_type=report.content_type,
        filename=report.path.name,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


def _json(data: Any) -> Response:
    return JSONResponse(jsonable_encoder(data))


@router.get("/schedule-list", response_model=None)
def schedule_list_report(
    runtime: RuntimeDep,
    _token: TokenDep,
    client: str | None = None,
    format: FormatQuery = DownloadFormat.JSON,
) -> Response:
    """List every job: client, schedule in words and cron, time zone, next run,
    last run and outcome, recipients, profile, active."""
    now = utcnow()
    with runtime.sessions() as session:
        if format == DownloadFormat.JSON:
            return _json(schedule_list(session, now, client))
        return _download(
            schedule_list_table(session, now, client), format, "schedule-list"
        )


@router.get("/schedule-history", response_model=None)
def schedule_history_report(
    runtime: RuntimeDep,
    _token: TokenDep,
    since: Annotated[
        str, Query(description="Start: 24h, 7d, 2w, a date or an ISO date-time")
    ] = "24h",
    until: Annotated[
        str | None, Query(description="End (exclusive); default now")
    ] = None,
    job: str | None = None,
    client: str | None = None,
    outcome: Annotated[
        str | None,
        Query(
            description="running, sending, held, succeeded, failed (the report or "
            "the delivery), skipped or missed"
        ),
    ] = None,
    format: FormatQuery = DownloadFormat.JSON,
) -> Response:
    """List every run in the period, with the delivery result of each email it sent."""
    now = utcnow()
    start = parse_point_in_time(since, now, "since")
    end = parse_point_in_time(until, now, "until") if until else now.astimezone(UTC)
    check_outcome_filter(outcome)
    with runtime.sessions() as session:
        if format == DownloadFormat.JSON:
            runs = list(
                schedule_history(
                    session, start, end, job=job, client=client, outcome=outcome
                )
            )
            return _json({"since": start, "until": end, "runs": runs})
        table = schedule_history_table(
            session, start, end, job=job, client=client, outcome=outcome
        )
        return _download(table, format, f"schedule-history-{_stamp(now)}")


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%MZ")
