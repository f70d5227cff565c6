"""Helpers for scheduled-job tests: an injected clock, a sales database,
runtimes with data sources, profiles pointed at test servers, jobs."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from postroom.domain import profiles
from postroom.domain.db import ensure_system_profiles, transaction
from postroom.domain.models import Base
from postroom.domain.scheduling import Job
from postroom.runtime import Runtime
from postroom.schedule.jobs import JobInput, create_job
from tests.conftest import make_runtime


@dataclass
class FakeClock:
    """The clock the scheduler reads; tests move it instead of waiting."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def make_sales_db(path: Path, rows: int = 25) -> Path:
    """A SQLite file with an ``orders`` table, as an operator's data source."""
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, city TEXT, "
        "total REAL, status TEXT)"
    )
    connection.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
        (
            (number, f"Customer {number}", "Chicago", number * 1.5, "open")
            for number in range(1, rows + 1)
        ),
    )
    connection.commit()
    connection.close()
    return path


def job_runtime(
    tmp_path: Path, database_url: str | None, sales_db: Path, **overrides: Any
) -> Runtime:
    """A runtime whose settings name the sales database as data source "sales"."""
    sources = {"sales": f"sqlite:///{sales_db}", **overrides.pop("data_sources", {})}
    opened = make_runtime(
        tmp_path,
        database_url,
        retry_base_seconds=1.0,
        data_sources=sources,
        **overrides,
    )
    if database_url is not None:
        tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
        with opened.engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        ensure_system_profiles(opened.sessions)
    return opened


def point_profile(
    runtime: Runtime, port: int, name: str = "DefaultDeliveryProfile"
) -> None:
    """Send a profile's mail to a test server on 127.0.0.1:port."""
    values = profiles.ProfileInput(
        host="127.0.0.1",
        port=port,
        security="none",
        from_address="Reports <reports@example.com>",
        is_active=True,
        connect_timeout=2.0,
        command_timeout=2.0,
    )
    with transaction(runtime.sessions) as session:
        if profiles.find_profile(session, name) is None:
            profiles.create_profile(
                session, runtime.secrets, values.model_copy(update={"name": name})
            )
        else:
            profiles.update_profile(session, runtime.secrets, name, values)


def sales_report(query: str = "SELECT * FROM orders ORDER BY id") -> dict[str, Any]:
    return {"kind": "sql", "data_source": "sales", "query": query}


def add_job(runtime: Runtime, now: datetime, **fields: Any) -> Job:
    values: dict[str, Any] = {
        "name": "Open orders",
        "cron": "0 7 * * *",
        "time_zone": "America/Chicago",
        "report": sales_report(),
        "format": "csv",
        "to": ["ops@example.com"],
    }
    if "run_at" in fields:
        del values["cron"]
    values.update(fields)
    with transaction(runtime.sessions) as session:
        return create_job(
            session, runtime.settings, JobInput.model_validate(values), now
        )
