"""A run whose report has one value too large for the email fails at once.

Each value is bounded by the attachment budget that report_max_message_bytes
leaves: SQLite refuses to build a larger one, and values from PostgreSQL
are measured before they are written. The run records why, and nothing is
queued.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from postroom.devserver.sink import SinkServer
from postroom.domain.models import OutboxMessage
from postroom.domain.scheduling import JobRun, RunOutcome
from postroom.runtime import Runtime
from postroom.schedule.runner import Runner
from postroom.schedule.runs import start_manual_run
from tests.schedule.helpers import FakeClock, add_job, job_runtime, point_profile, utc

NOW = utc(2026, 3, 2, 12, 0)
# The smallest setting allowed; the attachment budget it leaves is about
# 25,000 bytes.
MESSAGE_LIMIT = 100_000


@pytest.fixture(params=["sqlite", "postgresql"])
def runtime_with_sources(
    request: pytest.FixtureRequest, tmp_path: Path, sales_db: Path
) -> Iterator[Runtime]:
    """Postroom's database on SQLite or PostgreSQL, with a data source of each kind."""
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database_url")
    pg_source = request.getfixturevalue("pg_database_url")
    opened = job_runtime(
        tmp_path,
        url,
        sales_db,
        report_max_message_bytes=MESSAGE_LIMIT,
        data_sources={"warehouse": pg_source},
    )
    yield opened
    opened.close()


def run_job(runtime: Runtime) -> JobRun:
    claimed = start_manual_run(
        runtime.sessions, "Open orders", owner="test", now=NOW, lease=600
    )
    Runner(runtime, clock=FakeClock(NOW)).execute(claimed)
    with runtime.sessions() as session:
        run = session.get(JobRun, claimed.run_pk)
        assert run is not None
        session.expunge(run)
        return run


@pytest.mark.parametrize(
    ("source", "query", "where"),
    [
        ("sales", "SELECT zeroblob(20000000)", "a value the query produced"),
        ("sales", "SELECT id, hex(zeroblob(15000)) FROM orders", "a value the query"),
        ("warehouse", "SELECT repeat('x', 30000) AS note", "column 'note'"),
        ("warehouse", "SELECT decode(repeat('ab', 30000), 'hex') AS data", "column"),
    ],
)
def test_huge_value_fails_run(
    runtime_with_sources: Runtime, source: str, query: str, where: str
) -> None:
    add_job(
        runtime_with_sources,
        NOW,
        report={"kind": "sql", "data_source": source, "query": query},
    )

    run = run_job(runtime_with_sources)

    assert run.outcome == RunOutcome.FAILED
    assert run.diagnosis is not None
    assert run.diagnosis["id"] == "report-value-too-large"
    assert where in run.diagnosis["cause"]
    assert "the most the whole emailed report may take" in run.diagnosis["cause"]
    with runtime_with_sources.sessions() as session:
        queued = session.scalar(select(func.count()).select_from(OutboxMessage))
    assert queued == 0


def test_values_under_limit_are_queued(
    runtime_with_sources: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    point_profile(runtime_with_sources, start_sink().port)
    add_job(
        runtime_with_sources,
        NOW,
        report={
            "kind": "sql",
            "data_source": "warehouse",
            "query": "SELECT repeat('x', 1000) AS note",
        },
    )

    run = run_job(runtime_with_sources)

    assert run.outcome == RunOutcome.SUCCEEDED, run.diagnosis
    with runtime_with_sources.sessions() as session:
        queued = session.scalar(select(func.count()).select_from(OutboxMessage))
    assert queued == 1
