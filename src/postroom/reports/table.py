"""A report result as the writers take it: a title, columns and a row stream."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any

from postroom.reports.errors import ReportError


@dataclass
class Table:
    """Columns and rows; ``rows`` is read once, as the writer goes."""

    title: str
    columns: list[str]
    rows: Iterable[Sequence[Any]]


def cell_text(value: Any) -> str:
    """Render one value as text for CSV, HTML and PDF."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time_of_day):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def limit_rows(
    rows: Iterable[Sequence[Any]], max_rows: int, what: str = "the query"
) -> Iterator[Sequence[Any]]:
    """Pass rows through, failing once there are more than ``max_rows``."""
    for count, row in enumerate(rows, start=1):
        if count > max_rows:
            raise ReportError(
                "report-row-limit",
                f"{what} returned more than the row limit of {max_rows:,} rows",
                "Narrow the query (a WHERE clause or a shorter period), or raise "
                "the job's row_limit (at most the report_max_rows setting)",
            )
        yield row


def limit_time(
    rows: Iterable[Sequence[Any]], deadline: float, seconds: float
) -> Iterator[Sequence[Any]]:
    """Pass rows through, failing once the monotonic clock passes ``deadline``."""
    for count, row in enumerate(rows):
        # The clock is read every 256 rows: cheap, and rows come fast.
        if count % 256 == 0 and time.monotonic() > deadline:
            raise time_limit_error(seconds)
        yield row


def time_limit_error(seconds: float, error: str | None = None) -> ReportError:
    return ReportError(
        "report-time-limit",
        f"the report took longer than its time limit of {seconds:g} seconds",
        "Make the query faster (an index, fewer rows, a shorter period), or raise "
        "the job's time_limit_seconds (at most the report_max_seconds setting)",
        error=error,
    )
