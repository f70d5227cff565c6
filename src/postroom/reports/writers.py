"""Write a Table to a file as CSV, XLSX, PDF or an HTML table, row by row.

No writer keeps the rows: each one goes to the file as it arrives, so memory
does not grow with the row count. CSV, HTML and PDF stop as soon as the file
passes its size limit. XLSX is a zip whose size is known only when it is
closed, so it is checked then; its temporary files grow with the rows until
that point, bounded by the row limit.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import xlsxwriter

from postroom.domain.scheduling import ReportFormat
from postroom.reports.errors import ReportError
from postroom.reports.pdf import PdfTableWriter
from postroom.reports.table import Table, cell_text

CONTENT_TYPES = {
    ReportFormat.CSV: "text/csv",
    ReportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ReportFormat.PDF: "application/pdf",
    ReportFormat.HTML: "text/html",
}

# One sheet holds 1,048,576 rows, the header included (Excel specifications).
XLSX_MAX_ROWS = 1_048_575
# Integers beyond 2**53 lose digits as Excel numbers; they are written as text.
_EXACT_FLOAT_LIMIT = 2**53


class SizeLimitExceeded(Exception):
    """Raised by LimitedFile when a write would pass its limit."""


@dataclass(frozen=True)
class ReportFile:
    path: Path
    format: ReportFormat
    content_type: str
    size: int
    rows: int


class LimitedFile:
    """A binary file that raises SizeLimitExceeded past ``limit`` bytes."""

    def __init__(self, target: BinaryIO, limit: int | None) -> None:
        self._target = target
        self.limit = limit
        self.written = 0

    def write(self, data: bytes) -> int:
        size = len(data)
        if self.limit is not None and self.written + size > self.limit:
            raise SizeLimitExceeded
        self._target.write(data)
        self.written += size
        return size


class _TextBuffer:
    """Collects text and writes it out UTF-8 encoded in chunks of about 64 KiB."""

    _CHUNK = 64 * 1024

    def __init__(self, target: LimitedFile) -> None:
        self._target = target
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= self._CHUNK:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._parts:
            data = "".join(self._parts).encode()
            self._parts.clear()
            self._size = 0
            self._target.write(data)


class _CountingRows:
    """Wraps the row stream and counts what the writer consumed."""

    def __init__(self, rows: Any) -> None:
        self._rows = iter(rows)
        self.count = 0

    def __iter__(self) -> Iterator[Sequence[Any]]:
        for row in self._rows:
            self.count += 1
            yield row


def size_limit_error(fmt: ReportFormat, limit: int, rows: int) -> ReportError:
    return ReportError(
        "report-size-limit",
        f"the {fmt.value.upper()} report grew past the size limit of {limit:,} "
        f"bytes after {rows:,} rows, so no email was queued",
        "Narrow the query or shorten the period, choose a more compact format "
        "(XLSX is compressed), or raise POSTROOM_REPORT_MAX_MESSAGE_BYTES if your "
        "provider accepts larger messages",
    )


def write_report(
    table: Table, fmt: ReportFormat, path: Path, *, max_bytes: int | None = None
) -> ReportFile:
    """Write ``table`` to ``path``; raise ReportError past ``max_bytes``."""
    rows = _CountingRows(table.rows)
    counted = Table(title=table.title, columns=table.columns, rows=rows)
    try:
        if fmt == ReportFormat.XLSX:
            _write_xlsx(counted, path)
            size = path.stat().st_size
            if max_bytes is not None and size > max_bytes:
                raise SizeLimitExceeded
        else:
            with path.open("wb") as raw:
                limited = LimitedFile(raw, max_bytes)
                if fmt == ReportFormat.CSV:
                    _write_csv(counted, limited)
                elif fmt == ReportFormat.HTML:
                    _write_html(counted, limited)
                else:
                    PdfTableWriter(limited, table.title, table.columns).write(rows)
                size = limited.written
    except SizeLimitExceeded:
        path.unlink(missing_ok=True)
        assert max_bytes is not None
        raise size_limit_error(fmt, max_bytes, rows.count) from None
    return ReportFile(
        path=path,
        format=fmt,
        content_type=CONTENT_TYPES[fmt],
        size=size,
        rows=rows.count,
    )


def _write_csv(table: Table, target: LimitedFile) -> None:
    buffer = _TextBuffer(target)
    # The csv module ends lines with CRLF, as RFC 4180 specifies.
    writer = csv.writer(buffer)
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow([cell_text(value) for value in row])
    buffer.flush()


def _write_html(table: Table, target: LimitedFile) -> None:
    buffer = _TextBuffer(target)
    # Attributes rather than CSS: every mail client honours border and
    # cellpadding, while many drop <style> blocks.
    buffer.write(
        '<table border="1" cellpadding="4" cellspacing="0" '
        'style="border-collapse:collapse;font-family:Arial,sans-serif;font-size:13px">'
        "\n<thead><tr>"
    )
    for column in table.columns:
        buffer.write(f"<th>{html.escape(column)}</th>")
    buffer.write("</tr></thead>\n<tbody>\n")
    for row in table.rows:
        cells = "".join(f"<td>{html.escape(cell_text(value))}</td>" for value in row)
        buffer.write(f"<tr>{cells}</tr>\n")
    buffer.write("</tbody>\n</table>\n")
    buffer.flush()


def _write_xlsx(table: Table, path: Path) -> None:
    workbook = xlsxwriter.Workbook(
        str(path),
        {
            # Rows are flushed to a temporary file as they are written.
            "constant_memory": True,
            "tmpdir": str(path.parent),
            # Report values are data: a cell starting with '=' stays text,
            # never a formula, and no string becomes a link.
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
        },
    )
    try:
        sheet = workbook.add_worksheet(_sheet_name(table.title))
        bold = workbook.add_format({"bold": True})
        date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
        datetime_format = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        for column_index, column in enumerate(table.columns):
            sheet.write_string(0, column_index, column, bold)
        row_index = 0
        for row_index, row in enumerate(table.rows, start=1):
            if row_index > XLSX_MAX_ROWS:
                raise ReportError(
                    "report-xlsx-rows",
                    f"an XLSX sheet holds at most {XLSX_MAX_ROWS:,} rows",
                    "Narrow the query, or choose CSV",
                )
            for column_index, value in enumerate(row):
                _write_cell(
                    sheet,
                    row_index,
                    column_index,
                    value,
                    date_format,
                    datetime_format,
                )
        if row_index:
            sheet.autofilter(0, 0, row_index, max(len(table.columns) - 1, 0))
    finally:
        workbook.close()


def _write_cell(
    sheet: Any,
    row: int,
    column: int,
    value: Any,
    date_format: Any,
    datetime_format: Any,
) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        sheet.write_boolean(row, column, value)
    elif isinstance(value, int) and abs(value) < _EXACT_FLOAT_LIMIT:
        sheet.write_number(row, column, value)
    elif isinstance(value, float | Decimal) and not isinstance(value, bool):
        number = float(value)
        if number == number and abs(number) != float("inf"):
            sheet.write_number(row, column, number)
        else:
            sheet.write_string(row, column, cell_text(value))
    elif isinstance(value, datetime) and value.tzinfo is None:
        sheet.write_datetime(row, column, value, datetime_format)
    elif isinstance(value, date) and not isinstance(value, datetime):
        sheet.write_datetime(row, column, value, date_format)
    else:
        # Aware datetimes stay text: a spreadsheet cell has no time zone.
        # NOTE: text longer than 32,767 characters is cut to that length,
        # the most one XLSX cell holds.
        sheet.write_string(row, column, cell_text(value))


def _sheet_name(title: str) -> str:
    # Sheet names: at most 31 characters, none of []:*?/\ (Excel limits).
    cleaned = "".join(" " if char in "[]:*?/\\" else char for char in title).strip()
    return (cleaned or "Report")[:31]


def attachment_filename(job_name: str, day: date, fmt: ReportFormat) -> str:
    """Return a file name for a job's attachment, safe on every mail client."""
    safe = "".join(
        char if char.isalnum() or char in "-_." else "-" for char in job_name
    ).strip("-.")
    return f"{safe or 'report'}-{day.isoformat()}.{fmt.value}"
