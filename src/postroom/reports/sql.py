"""Run a report query against an operator-configured data source, read-only.

Read-only is enforced by the database, not by inspecting the SQL:

- PostgreSQL: the query runs in a READ ONLY transaction, through a
  server-side cursor (DECLARE ... CURSOR), which accepts only one SELECT or
  VALUES and no data-modifying WITH. A function that writes fails too.
- SQLite: the file is opened with ``mode=ro``, and ``query_only`` is set.
- Other SQLAlchemy dialects: the query runs in a transaction that is rolled
  back. NOTE: that undoes writes but does not stop them; give such data
  sources a database login that can only read.

The time limit cancels the query on the server (PostgreSQL) or interrupts
it (SQLite) and is also checked between rows, since writing the report
consumes rows while the query is still running.

A single value larger than the report may be (``max_value_bytes``) fails
the run: SQLite refuses to build it (SQLITE_LIMIT_LENGTH), and for other
databases each value is measured before it is written.
NOTE: PostgreSQL and other databases send the value before it can be
measured, so one fetch may hold it in memory. Only SQLite stops it sooner.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from postroom.domain.db import normalize_database_url
from postroom.errors import InvalidInputError
from postroom.reports.errors import ReportError
from postroom.reports.table import (
    Table,
    limit_rows,
    limit_time,
    limit_values,
    time_limit_error,
    value_too_large,
)

# Rows fetched per round trip from a server-side cursor.
FETCH_SIZE = 1000
CONNECT_TIMEOUT_SECONDS = 15

_LEADING_NOISE = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.DOTALL)
_FIRST_WORD = re.compile(r"[A-Za-z]+")
_READING_STATEMENTS = ("select", "with", "values", "table")

# PostgreSQL error codes (SQLSTATE, PostgreSQL manual appendix A).
_PG_READ_ONLY = "25006"
_PG_QUERY_CANCELED = "57014"
_PG_SYNTAX_ERROR = "42601"
_PG_FEATURE_NOT_SUPPORTED = "0A000"

_READ_ONLY_FIX = (
    "Report queries can only read: remove the INSERT, UPDATE, DELETE or DDL, or "
    "the function call that writes, and run the change outside Postroom"
)


def check_query(query: str, field: str = "report.query") -> str:
    """Return the query without a trailing semicolon; reject non-SELECT statements."""
    text = query.strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise InvalidInputError(
            "is required: a SELECT statement that returns the report's rows",
            field=field,
        )
    rest = _LEADING_NOISE.sub("", text, count=1)
    word = _FIRST_WORD.match(rest)
    first = word.group().lower() if word else rest[:10]
    if first not in _READING_STATEMENTS:
        raise InvalidInputError(
            f"must be a single SELECT statement (or WITH ... SELECT, VALUES, TABLE), "
            f"but starts with {first.upper()!r}; data sources are read-only, so "
            "report queries cannot change data",
            field=field,
        )
    return text


def data_source_dialect(url: str) -> str:
    """Return the database kind of a data source URL, such as 'postgresql'."""
    try:
        return str(make_url(normalize_database_url(url)).get_backend_name())
    except ArgumentError:
        return "invalid URL"


def check_data_source(name: str, sources: dict[str, str], field: str) -> str:
    """Return the URL of data source ``name``; raise InvalidInputError if unknown."""
    if name in sources:
        return sources[name]
    configured = ", ".join(sorted(sources)) or "none are configured"
    raise InvalidInputError(
        f"no data source named {name!r} ({configured}); an operator configures "
        "data sources with POSTROOM_DATA_SOURCE_<NAME>=<url> or the "
        "[data_sources] table of the config file",
        field=field,
    )


@contextlib.contextmanager
def query_table(
    url: str,
    query: str,
    *,
    title: str,
    max_rows: int,
    max_seconds: float,
    cancel: threading.Event | None = None,
    max_value_bytes: int | None = None,
) -> Iterator[Table]:
    """Open the data source read-only and yield the query's rows as a Table.

    The rows stream from the database while the caller consumes them; the
    connection is closed when the block ends. With ``max_value_bytes``, a
    text or binary value larger than that fails the report. Raises
    ReportError.
    """
    query = check_query(query)
    try:
        parsed = make_url(normalize_database_url(url))
    except ArgumentError as exc:
        raise ReportError(
            "report-data-source-invalid",
            "the data source URL is not a valid SQLAlchemy URL",
            "Correct the data source's URL in the configuration, for example "
            "postgresql://reader@db.internal/sales or sqlite:////srv/data/sales.db",
        ) from exc

    deadline = time.monotonic() + max_seconds
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        opened = _sqlite_rows(
            parsed, query, deadline, max_seconds, cancel, max_value_bytes
        )
    elif backend == "postgresql":
        opened = _postgresql_rows(parsed, query, deadline, max_seconds, cancel)
    else:
        opened = _generic_rows(parsed, query)

    with opened as (columns, rows, classify):
        guarded = limit_time(
            limit_rows(_translated(rows, classify, max_seconds), max_rows),
            deadline,
            max_seconds,
        )
        if max_value_bytes is not None:
            guarded = limit_values(guarded, columns, max_value_bytes)
        yield Table(title=title, columns=columns, rows=guarded)


Classifier = Callable[[BaseException], ReportError | None]
Opened = tuple[list[str], Iterator[Sequence[Any]], Classifier]


def _translated(
    rows: Iterator[Sequence[Any]], classify: Classifier, max_seconds: float
) -> Iterator[Sequence[Any]]:
    """Turn driver errors raised while fetching into ReportErrors."""
    try:
        yield from rows
    except ReportError:
        raise
    except Exception as exc:
        report_error = classify(exc)
        if report_error is None:
            raise
        raise report_error from exc


def _fetch(cursor: Any) -> Iterator[Sequence[Any]]:
    while True:
        batch = cursor.fetchmany(FETCH_SIZE)
        if not batch:
            return
        yield from batch


def _query_failed(error: str) -> ReportError:
    return ReportError(
        "report-query-failed",
        f"the data source rejected the query: {error}",
        "Correct the query; run it in a SQL client against the same database to "
        "see the problem in context",
        error=error,
    )


def _unreachable(error: str) -> ReportError:
    return ReportError(
        "report-data-source-unreachable",
        f"cannot connect to the data source: {error}",
        "Check that the database is running and reachable from Postroom, and the "
        "data source's URL, login and database name in the configuration",
        error=error,
    )


def _read_only(error: str) -> ReportError:
    return ReportError(
        "report-read-only",
        f"the query tried to change data, but the data source is read-only: {error}",
        _READ_ONLY_FIX,
        error=error,
    )


@contextlib.contextmanager
def _sqlite_rows(
    url: URL,
    query: str,
    deadline: float,
    max_seconds: float,
    cancel: threading.Event | None,
    max_value_bytes: int | None,
) -> Iterator[Opened]:
    database = url.database or ""
    if not database or database == ":memory:" or not Path(database).is_absolute():
        raise ReportError(
            "report-data-source-invalid",
            "a SQLite data source must name a database file by its absolute path",
            "Use a URL with four slashes and the full path, for example "
            "sqlite:////srv/data/sales.db",
        )
    interrupted: list[str] = []

    def progress() -> int:
        if cancel is not None and cancel.is_set():
            interrupted.append("cancelled")
            return 1
        if time.monotonic() > deadline:
            interrupted.append("time")
            return 1
        return 0

    try:
        # mode=ro: SQLite itself rejects every write to this connection.
        connection = sqlite3.connect(
            f"file:{quote(database)}?mode=ro", uri=True, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise _unreachable(f"{exc} ({database})") from exc

    def classify(exc: BaseException) -> ReportError | None:
        if not isinstance(exc, sqlite3.Error):
            return None
        text = str(exc)
        if interrupted and interrupted[0] == "cancelled":
            return _cancelled()
        if interrupted:
            return time_limit_error(max_seconds, error=text)
        if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_READONLY") or (
            "readonly" in text or "query_only" in text
        ):
            return _read_only(text)
        too_big = getattr(exc, "sqlite_errorname", "") == "SQLITE_TOOBIG"
        if too_big and max_value_bytes is not None:
            return value_too_large(max_value_bytes, "a value the query produced")
        if "one statement at a time" in text:
            return ReportError(
                "report-not-single-statement",
                "the query holds more than one statement",
                "Keep one SELECT statement; a report has one result",
                error=text,
            )
        if "unable to open" in text:
            return _unreachable(f"{text} ({database})")
        return _query_failed(text)

    try:
        connection.set_progress_handler(progress, 10_000)
        if max_value_bytes is not None:
            # SQLite then refuses to build any string or blob (zeroblob(),
            # a huge concatenation) larger than the report could carry,
            # instead of allocating it first.
            connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_value_bytes)
        connection.execute("PRAGMA query_only = ON")
        cursor = connection.execute(query)
        columns = [description[0] for description in cursor.description or ()]
        yield columns, _fetch(cursor), classify
    except sqlite3.Error as exc:
        report_error = classify(exc)
        if report_error is None:
            raise
        raise report_error from exc
    finally:
        connection.close()


@contextlib.contextmanager
def _postgresql_rows(
    url: URL,
    query: str,
    deadline: float,
    max_seconds: float,
    cancel: threading.Event | None,
) -> Iterator[Opened]:
    import psycopg

    engine = create_engine(
        url,
        poolclass=NullPool,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": "postroom-report",
        },
    )
    try:
        raw = engine.raw_connection()
    except (SQLAlchemyError, psycopg.Error) as exc:
        raise _unreachable(_driver_message(exc)) from exc
    connection: psycopg.Connection[Any] = raw.dbapi_connection  # type: ignore[assignment]
    reason: list[str] = []

    def stop(cause: str) -> None:
        reason.append(cause)
        connection.cancel_safe()

    # The timer covers the whole fetch, which spans many FETCH statements;
    # statement_timeout bounds each one as a second line of defence.
    timer = threading.Timer(max(deadline - time.monotonic(), 0.0), stop, ("time",))
    watcher: threading.Thread | None = None
    finished = threading.Event()
    if cancel is not None:

        def watch() -> None:
            while not finished.wait(0.2):
                if cancel.is_set():
                    stop("cancelled")
                    return

        watcher = threading.Thread(target=watch, daemon=True)

    def classify(exc: BaseException) -> ReportError | None:
        if not isinstance(exc, psycopg.Error):
            return None
        text = _first_line(str(exc))
        state = getattr(exc, "sqlstate", None)
        if reason and reason[0] == "cancelled":
            return _cancelled()
        if state == _PG_QUERY_CANCELED:
            return time_limit_error(max_seconds, error=text)
        if state == _PG_READ_ONLY or (
            state == _PG_FEATURE_NOT_SUPPORTED and "data-modifying" in text
        ):
            return _read_only(text)
        if state == _PG_SYNTAX_ERROR and "multiple commands" in text:
            return ReportError(
                "report-not-single-statement",
                "the query holds more than one statement",
                "Keep one SELECT statement; a report has one result",
                error=text,
            )
        if isinstance(exc, psycopg.OperationalError) and state is None:
            return _unreachable(text)
        return _query_failed(text)

    try:
        # READ ONLY makes PostgreSQL reject any write in this transaction,
        # including one made by a function the query calls.
        connection.read_only = True
        with connection.cursor() as setup:
            setup.execute(
                "SELECT set_config('statement_timeout', %s, true)",
                (f"{int(max_seconds * 1000)}ms",),
            )
        cursor = connection.cursor(name="postroom_report")
        cursor.itersize = FETCH_SIZE
        timer.start()
        if watcher is not None:
            watcher.start()
        # No parameters are passed, so psycopg leaves '%' in the query alone.
        cursor.execute(query.encode())
        columns = [column.name for column in cursor.description or ()]
        yield columns, _fetch(cursor), classify
    except psycopg.Error as exc:
        report_error = classify(exc)
        if report_error is None:
            raise
        raise report_error from exc
    finally:
        timer.cancel()
        finished.set()
        with contextlib.suppress(Exception):
            connection.rollback()
        raw.close()
        engine.dispose()


@contextlib.contextmanager
def _generic_rows(url: URL, query: str) -> Iterator[Opened]:
    try:
        engine = create_engine(url, poolclass=NullPool)
        raw = engine.raw_connection()
    except Exception as exc:
        # Any driver, any error class: what matters is its message.
        raise _unreachable(_driver_message(exc)) from exc

    def classify(exc: BaseException) -> ReportError | None:
        return _query_failed(_first_line(str(exc)))

    try:
        cursor = raw.cursor()
        cursor.execute(query)
        columns = [description[0] for description in cursor.description or ()]
        yield columns, _fetch(cursor), classify
    except Exception as exc:
        raise _query_failed(_first_line(str(exc))) from exc
    finally:
        with contextlib.suppress(Exception):
            raw.rollback()
        raw.close()
        engine.dispose()


def _cancelled() -> ReportError:
    return ReportError(
        "report-interrupted",
        "the run was interrupted because Postroom stopped while the report ran",
        "Run the job again with 'postroom job run NAME', or wait for its next "
        "scheduled run",
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _driver_message(exc: Exception) -> str:
    """Return the driver's own message, without SQLAlchemy's SQL echo and URL."""
    original = getattr(exc, "orig", None)
    return _first_line(str(original if original is not None else exc))
