"""Fixtures for the scheduler tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.runtime import Runtime
from tests.schedule.helpers import job_runtime, make_sales_db


@pytest.fixture
def sales_db(tmp_path: Path) -> Path:
    return make_sales_db(tmp_path / "sales.db")


@pytest.fixture
def jobs_runtime(tmp_path: Path, sales_db: Path) -> Iterator[Runtime]:
    """A SQLite runtime with the sales data source."""
    opened = job_runtime(tmp_path, None, sales_db)
    yield opened
    opened.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_jobs_runtime(
    request: pytest.FixtureRequest, tmp_path: Path, sales_db: Path
) -> Iterator[Runtime]:
    """The same test with Postroom's database on SQLite and on PostgreSQL."""
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database_url")
    opened = job_runtime(tmp_path, url, sales_db)
    yield opened
    opened.close()
