"""Report writers: contents read back, the size limit, and memory that does
not grow with the row count."""

from __future__ import annotations

import csv
import gc
import io
import sqlite3
import tracemalloc
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import openpyxl
import pypdf
import pytest

from postroom.domain.scheduling import ReportFormat
from postroom.reports.errors import ReportError
from postroom.reports.sql import query_table
from postroom.reports.table import Table
from postroom.reports.writers import write_report

COLUMNS = ["id", "customer", "total", "placed", "day", "note"]


def sample_rows(count: int) -> list[tuple[object, ...]]:
    return [
        (
            number,
            f"Customer {number} (Müller & Söhne)",
            Decimal("12.50") * number,
            datetime(2026, 3, 8, 7, 0),
            date(2026, 3, 8),
            None,
        )
        for number in range(1, count + 1)
    ]


def test_csv_reads_back(tmp_path: Path) -> None:
    report = write_report(
        Table("Orders", COLUMNS, sample_rows(3)), ReportFormat.CSV, tmp_path / "o.csv"
    )

    rows = list(csv.reader(io.StringIO(report.path.read_text(encoding="utf-8"))))
    assert report.rows == 3
    assert rows[0] == COLUMNS
    assert rows[3] == [
        "3",
        "Customer 3 (Müller & Söhne)",
        "37.50",
        "2026-03-08 07:00:00",
        "2026-03-08",
        "",
    ]
    assert report.path.read_bytes().count(b"\r\n") == 4


def test_xlsx_keeps_types(tmp_path: Path) -> None:
    rows = [(1, '=HYPERLINK("http://x")', 2.5, datetime(2026, 3, 8, 7, 0), True)]
    report = write_report(
        Table("Open orders: March", ["id", "text", "total", "at", "flag"], rows),
        ReportFormat.XLSX,
        tmp_path / "o.xlsx",
    )

    workbook = openpyxl.load_workbook(report.path)
    sheet = workbook.active
    assert sheet is not None
    assert sheet.title == "Open orders  March"
    values = [cell.value for cell in sheet[2]]
    # A formula in the data stays text: no formula runs in the reader's Excel.
    assert values == [
        1,
        '=HYPERLINK("http://x")',
        2.5,
        datetime(2026, 3, 8, 7, 0),
        True,
    ]
    assert sheet["B2"].data_type == "s"


def test_pdf_reads_back_across_pages(tmp_path: Path) -> None:
    report = write_report(
        Table("Open orders", COLUMNS, sample_rows(120)),
        ReportFormat.PDF,
        tmp_path / "o.pdf",
    )

    reader = pypdf.PdfReader(report.path)
    assert len(reader.pages) == 3
    first = reader.pages[0].extract_text()
    last = reader.pages[-1].extract_text()
    assert "Open orders - page 1" in first
    assert "Customer 1 (Müller & Söhne)" in first
    assert "Customer 120" in last
    assert reader.metadata is not None
    assert reader.metadata.title == "Open orders"


def test_pdf_replaces_characters_outside_font(tmp_path: Path) -> None:
    report = write_report(
        Table("Orders", ["name"], [("東京 order",)]),
        ReportFormat.PDF,
        tmp_path / "o.pdf",
    )

    assert "?? order" in pypdf.PdfReader(report.path).pages[0].extract_text()


def test_pdf_empty_table_has_header(tmp_path: Path) -> None:
    report = write_report(
        Table("Orders", COLUMNS, []), ReportFormat.PDF, tmp_path / "o.pdf"
    )

    text = pypdf.PdfReader(report.path).pages[0].extract_text()
    assert report.rows == 0
    assert "customer" in text


def test_html_escapes_cells(tmp_path: Path) -> None:
    report = write_report(
        Table("Orders", ["name"], [("<script>alert(1)</script>",)]),
        ReportFormat.HTML,
        tmp_path / "o.html",
    )

    content = report.path.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<script>" not in content


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_size_limit_stops_writer(fmt: ReportFormat, tmp_path: Path) -> None:
    rows = ((number, f"Customer {number}" * 4) for number in range(1, 200_001))
    path = tmp_path / f"o.{fmt.value}"

    with pytest.raises(ReportError) as caught:
        write_report(
            Table("Orders", ["id", "name"], rows), fmt, path, max_bytes=200_000
        )

    error = caught.value
    assert error.id == "report-size-limit"
    assert f"the {fmt.value.upper()} report grew past the size limit of 200,000" in (
        error.cause
    )
    assert "POSTROOM_REPORT_MAX_MESSAGE_BYTES" in error.fix
    assert not path.exists()


def make_orders(path: Path, count: int) -> str:
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE orders (id INTEGER, customer TEXT, city TEXT, total REAL, "
        "placed TEXT)"
    )
    connection.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
        (
            (
                number,
                f"Customer number {number}",
                "Springfield",
                number * 1.25,
                "2026-03-08",
            )
            for number in range(count)
        ),
    )
    connection.commit()
    connection.close()
    return f"sqlite:///{path}"


def peak_bytes(url: str, fmt: ReportFormat, output: Path) -> tuple[int, int]:
    """Return the traced memory peak of query and writer, and the file size."""
    gc.collect()
    tracemalloc.start()
    try:
        with query_table(
            url,
            "SELECT * FROM orders",
            title="Orders",
            max_rows=1_000_000,
            max_seconds=120,
        ) as table:
            report = write_report(table, fmt, output)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, report.size


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_memory_does_not_grow_with_rows(fmt: ReportFormat, tmp_path: Path) -> None:
    small_url = make_orders(tmp_path / "small.db", 10_000)
    large_url = make_orders(tmp_path / "large.db", 100_000)

    small_peak, small_size = peak_bytes(small_url, fmt, tmp_path / f"s.{fmt.value}")
    large_peak, large_size = peak_bytes(large_url, fmt, tmp_path / f"l.{fmt.value}")

    # Ten times the rows makes a file about ten times larger ...
    assert large_size > 8 * small_size
    # ... but not ten times the memory: holding the rows or the file would.
    assert large_peak < 1.5 * small_peak
    assert large_peak < large_size


def test_pdf_wide_table_wraps_instead_of_cutting(tmp_path: Path) -> None:
    columns = [f"column_{index}" for index in range(20)]
    long_text = "the provider refused the email for ops@example.com: 550 5.1.1 unknown"
    row = ["2026-12-04T07:00:00+00:00", long_text, *["failed"] * 18]
    report = write_report(
        Table("Schedule History", columns, [row]), ReportFormat.PDF, tmp_path / "w.pdf"
    )

    reader = pypdf.PdfReader(report.path)
    text = reader.pages[0].extract_text()
    joined = "".join(text.split())
    width, height = reader.pages[0].mediabox.width, reader.pages[0].mediabox.height
    assert (round(width), round(height)) == (1191, 842)
    assert "?" not in text
    assert "2026-12-04T07:00:00+00:00" in joined
    # Wrapped lines interleave with the other columns in extracted text, so
    # each word is checked, and no cut mark may appear.
    for word in long_text.replace("@", "@ ").split():
        assert word in joined
    assert "\u2026" not in text
    for column in columns:
        assert column in joined


def test_pdf_cut_mark_is_an_ellipsis(tmp_path: Path) -> None:
    report = write_report(
        Table("Orders", ["a", "b"], [("x", "word " * 2000)]),
        ReportFormat.PDF,
        tmp_path / "o.pdf",
    )

    text = pypdf.PdfReader(report.path).pages[0].extract_text()
    assert "\u2026" in text
    assert "?" not in text
