"""SQL reports against real SQLite and PostgreSQL data sources: read-only,
row limit, time limit, and errors that name what to change."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from postroom.errors import InvalidInputError
from postroom.reports.errors import ReportError
from postroom.reports.sql import check_query, query_table
from tests.schedule.helpers import make_sales_db


def fetch(url: str, query: str, **limits: Any) -> tuple[list[str], list[Any]]:
    options: dict[str, Any] = {"max_rows": 1000, "max_seconds": 10.0}
    options.update(limits)
    with query_table(url, query, title="Test", **options) as table:
        return table.columns, [tuple(row) for row in table.rows]


def report_error(url: str, query: str, **limits: Any) -> ReportError:
    with pytest.raises(ReportError) as caught:
        fetch(url, query, **limits)
    return caught.value


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{make_sales_db(tmp_path / 'sales.db')}"


@pytest.fixture
def pg_source(pg_database_url: str) -> Iterator[str]:
    """A PostgreSQL data source with an orders table and a sequence."""
    engine = create_engine(pg_database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP TABLE IF EXISTS report_orders"))
        connection.execute(text("DROP SEQUENCE IF EXISTS report_numbers"))
        connection.execute(
            text("CREATE TABLE report_orders (id int, note text, placed timestamptz)")
        )
        connection.execute(text("CREATE SEQUENCE report_numbers"))
        connection.execute(
            text(
                "INSERT INTO report_orders SELECT n, 'note ' || n || ' 50%', "
                "'2026-03-08 07:00+00' FROM generate_series(1, 30) AS n"
            )
        )
    yield pg_database_url
    with engine.connect() as connection:
        connection.execute(text("DROP TABLE IF EXISTS report_orders"))
        connection.execute(text("DROP SEQUENCE IF EXISTS report_numbers"))
    engine.dispose()


def test_sqlite_rows_stream(sqlite_url: str) -> None:
    columns, rows = fetch(sqlite_url, "SELECT id, customer FROM orders WHERE id <= 3")

    assert columns == ["id", "customer"]
    assert rows == [(1, "Customer 1"), (2, "Customer 2"), (3, "Customer 3")]


def test_sqlite_write_fails_read_only(sqlite_url: str, tmp_path: Path) -> None:
    # WITH ... INSERT passes the leading-keyword check; SQLite itself
    # rejects the write because the file is opened read-only.
    error = report_error(
        sqlite_url,
        "WITH extra AS (SELECT 99, 'x', 'y', 1.0, 'open') "
        "INSERT INTO orders SELECT * FROM extra",
    )

    assert error.id == "report-read-only"
    assert "the data source is read-only" in error.cause
    assert "attempt to write a readonly database" in error.cause
    assert "Report queries can only read" in error.fix
    count = sqlite3.connect(tmp_path / "sales.db").execute(
        "SELECT count(*) FROM orders"
    )
    assert count.fetchone() == (25,)


def test_sqlite_two_statements_rejected(sqlite_url: str) -> None:
    error = report_error(sqlite_url, "SELECT 1; DELETE FROM orders")

    assert error.id == "report-not-single-statement"


def test_sqlite_row_limit(sqlite_url: str) -> None:
    error = report_error(sqlite_url, "SELECT * FROM orders", max_rows=10)

    assert error.id == "report-row-limit"
    assert "more than the row limit of 10 rows" in error.cause


def test_sqlite_time_limit_interrupts(sqlite_url: str) -> None:
    endless = (
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
        "SELECT count(*) FROM n"
    )
    error = report_error(sqlite_url, endless, max_seconds=0.3)

    assert error.id == "report-time-limit"
    assert "longer than its time limit of 0.3 seconds" in error.cause


def test_sqlite_cancel_interrupts(sqlite_url: str) -> None:
    cancel = threading.Event()
    cancel.set()
    endless = (
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
        "SELECT count(*) FROM n"
    )
    with pytest.raises(ReportError) as caught:
        fetch(sqlite_url, endless, cancel=cancel)

    assert caught.value.id == "report-interrupted"


def test_sqlite_missing_file(tmp_path: Path) -> None:
    error = report_error(f"sqlite:///{tmp_path}/nowhere.db", "SELECT 1")

    assert error.id == "report-data-source-unreachable"
    assert "unable to open database file" in error.cause


def test_sqlite_relative_path_rejected() -> None:
    error = report_error("sqlite:///sales.db", "SELECT 1")

    assert error.id == "report-data-source-invalid"
    assert "absolute path" in error.cause


@pytest.mark.postgres
def test_pg_rows_keep_percent_and_colon(pg_source: str) -> None:
    columns, rows = fetch(
        pg_source,
        "SELECT id, note, to_char(placed AT TIME ZONE 'UTC', 'HH24:MI') AS at "
        "FROM report_orders WHERE note LIKE '%50%' AND id < 3 ORDER BY id",
    )

    assert columns == ["id", "note", "at"]
    assert rows == [(1, "note 1 50%", "07:00"), (2, "note 2 50%", "07:00")]


@pytest.mark.postgres
def test_pg_writing_function_fails_read_only(pg_source: str) -> None:
    error = report_error(pg_source, "SELECT nextval('report_numbers')")

    assert error.id == "report-read-only"
    assert "cannot execute nextval() in a read-only transaction" in error.cause


@pytest.mark.postgres
def test_pg_writable_cte_fails_read_only(pg_source: str) -> None:
    error = report_error(
        pg_source,
        "WITH gone AS (DELETE FROM report_orders RETURNING id) SELECT * FROM gone",
    )

    assert error.id == "report-read-only"
    engine = create_engine(pg_source)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM report_orders")) == 30
    engine.dispose()


@pytest.mark.postgres
def test_pg_two_statements_rejected(pg_source: str) -> None:
    error = report_error(pg_source, "SELECT 1; DELETE FROM report_orders")

    assert error.id == "report-not-single-statement"


@pytest.mark.postgres
def test_pg_time_limit_cancels(pg_source: str) -> None:
    error = report_error(pg_source, "SELECT pg_sleep(30)", max_seconds=0.5)

    assert error.id == "report-time-limit"


@pytest.mark.postgres
def test_pg_row_limit(pg_source: str) -> None:
    error = report_error(pg_source, "SELECT * FROM report_orders", max_rows=29)

    assert error.id == "report-row-limit"


@pytest.mark.postgres
def test_pg_unreachable_hides_password(pg_source: str) -> None:
    from tests.peers.blackhole import closed_port

    url = (
        make_url(pg_source)
        .set(password="Data-Source-Secret-9", port=closed_port())
        .render_as_string(hide_password=False)
    )
    error = report_error(url, "SELECT 1")

    assert error.id == "report-data-source-unreachable"
    assert "Connection refused" in error.cause
    assert "Data-Source-Secret-9" not in f"{error.cause} {error.fix} {error.error}"


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO orders VALUES (1)",
        "delete from orders",
        "UPDATE orders SET total = 0",
        "ATTACH '/tmp/other.db' AS other",
        "PRAGMA query_only = OFF",
        "-- comment\nDROP TABLE orders",
        "/* select */ CREATE TABLE x (id int)",
    ],
)
def test_writing_statement_refused_at_save(query: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_query(query)

    assert caught.value.field == "report.query"
    assert "must be a single SELECT statement" in caught.value.message


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1",
        "  (SELECT 1) UNION (SELECT 2);",
        "-- open orders\nSELECT * FROM orders",
        "WITH t AS (SELECT 1) SELECT * FROM t",
        "VALUES (1), (2)",
        "TABLE orders",
    ],
)
def test_reading_statement_accepted(query: str) -> None:
    assert check_query(query).rstrip(";") == query.strip().rstrip(";").rstrip()


# One value larger than the whole report may be.


def test_sqlite_huge_value_refused(sqlite_url: str) -> None:
    error = report_error(
        sqlite_url, "SELECT id, zeroblob(100000000) FROM orders", max_value_bytes=50_000
    )

    assert error.id == "report-value-too-large"
    assert "larger than 50,000 bytes" in error.cause
    assert "substr()" in error.fix


def test_sqlite_value_under_limit_passes(sqlite_url: str) -> None:
    columns, rows = fetch(
        sqlite_url,
        "SELECT id, zeroblob(1000) AS blob, customer FROM orders WHERE id = 1",
        max_value_bytes=50_000,
    )

    assert columns == ["id", "blob", "customer"]
    assert rows == [(1, bytes(1000), "Customer 1")]


@pytest.mark.postgres
def test_pg_huge_value_refused(pg_source: str) -> None:
    error = report_error(
        pg_source,
        "SELECT id, repeat('é', 30000) AS note FROM report_orders ORDER BY id",
        max_value_bytes=50_000,
    )

    assert error.id == "report-value-too-large"
    assert "row 1, column 'note' is 60,000 bytes" in error.cause
    assert "larger than 50,000 bytes" in error.cause


@pytest.mark.postgres
def test_pg_huge_binary_refused(pg_source: str) -> None:
    error = report_error(
        pg_source,
        "SELECT decode(repeat('00', 60000), 'hex') AS data",
        max_value_bytes=50_000,
    )

    assert error.id == "report-value-too-large"
    assert "column 'data' is 60,000 bytes" in error.cause


@pytest.mark.postgres
def test_pg_value_under_limit_passes(pg_source: str) -> None:
    _columns, rows = fetch(
        pg_source,
        "SELECT id, repeat('x', 1000) FROM report_orders WHERE id = 1",
        max_value_bytes=50_000,
    )

    assert rows == [(1, "x" * 1000)]
