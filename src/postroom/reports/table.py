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


def value_size(value: Any) -> int:
    """Return the size in bytes of a text or binary value; 0 for numbers and dates.

    Other values (PostgreSQL arrays and JSON, for example) are measured as
    the text a report writes for them.
    """
    if value is None or isinstance(
        value, bool | int | float | Decimal | date | time_of_day
    ):
        return 0
    if isinstance(value, bytes | bytearray | memoryview):
        return memoryview(value).nbytes
    text = value if isinstance(value, str) else cell_text(value)
    # ASCII text takes one byte a character; other text is encoded to count
    # its UTF-8 bytes.
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def value_too_large(limit: int, where: str, size: int | None = None) -> ReportError:
    measured = f"is {size:,} bytes," if size is not None else "is"
    return ReportError(
        "report-value-too-large",
        f"{where} {measured} larger than {limit:,} bytes, the most the whole "
        "emailed report may take, so the run was stopped",
        "Select a shorter value (for example with substr() or left()) or leave the "
        "column out, or raise POSTROOM_REPORT_MAX_MESSAGE_BYTES if your provider "
        "accepts larger messages",
    )


def limit_values(
    rows: Iterable[Sequence[Any]], columns: Sequence[str], limit: int
) -> Iterator[Sequence[Any]]:
    """Pass rows through, failing at the first value larger than ``limit`` bytes.

    The check comes before the writer turns the value into text, which for
    binary data (hex) doubles it.
    """
    for number, row in enumerate(rows, start=1):
        for index, value in enumerate(row):
            size = value_size(value)
            if size > limit:
                column = columns[index] if index < len(columns) else f"#{index + 1}"
                raise value_too_large(
                    limit, f"the value in row {number:,}, column {column!r}", size
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
