"""Saving jobs: every field validated with the field named, nothing stored on
error, next runs computed, runs that skip empty results, failures recorded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from postroom.devserver.sink import SinkServer
from postroom.domain.db import transaction
from postroom.domain.scheduling import Job, JobRun
from postroom.errors import ConflictError, InvalidInputError
from postroom.runtime import Runtime
from postroom.schedule.jobs import JobInput, delete_job, update_job
from postroom.schedule.runner import Runner
from postroom.schedule.runs import start_manual_run
from tests.schedule.helpers import (
    FakeClock,
    add_job,
    point_profile,
    sales_report,
    utc,
)

NOW = utc(2026, 5, 4, 11, 0)


def job_count(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"cron": "0 0 30 2 *"}, "cron", "never fires: February has no day 30"),
        ({"cron": "0 0 7 * * *"}, "cron", "six fields"),
        ({"cron": "0 0 L * *"}, "cron", "'L' (last day)"),
        ({"time_zone": "Chicago"}, "time_zone", "is not an IANA time zone name"),
        (
            {"cron": None, "run_at": "2026-05-04T05:00"},
            "run_at",
            "in America/Chicago is in the past",
        ),
        (
            {"cron": None, "run_at": "2026-06-01T09:00+02:00"},
            "run_at",
            "without an offset",
        ),
        ({"cron": None, "run_at": "next week"}, "run_at", "is not a date and time"),
        ({"cron": "0 7 * * *", "run_at": "2026-06-01T09:00"}, "run_at", "not both"),
        ({"cron": None}, "cron", "a schedule is required"),
        ({"to": [], "cc": [], "bcc": []}, "to", "at least one recipient"),
        ({"to": ["not an address"]}, "to[0]", "is not a single valid address"),
        ({"subject": "{{ rowz }}"}, "subject", "'rowz' is undefined"),
        ({"body": "{% for %}"}, "body", "template error"),
        (
            {"subject": "{{ 'x' * 2000000 }}"},
            "subject",
            "would produce more than 1000000 items",
        ),
        (
            {"body": "{{ job.__class__.__mro__ }}"},
            "body",
            "template error",
        ),
        ({"profile": "Nowhere"}, "profile", "no email profile named 'Nowhere'"),
        (
            {"report": sales_report("DELETE FROM orders")},
            "report.query",
            "must be a single SELECT statement",
        ),
        (
            {"report": {"kind": "sql", "data_source": "crm", "query": "SELECT 1"}},
            "report.data_source",
            "no data source named 'crm' (sales)",
        ),
        (
            {"report": {**sales_report(), "row_limit": 10_000_000}},
            "report.row_limit",
            "the report_max_rows setting",
        ),
        (
            {"report": {"kind": "schedule-history", "outcome": "great"}},
            "report.outcome",
            "must be one of",
        ),
        ({"name": "a/b"}, "name", "must not contain '/'"),
    ],
)
def test_invalid_job_rejected(
    jobs_runtime: Runtime, fields: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        add_job(jobs_runtime, NOW, **fields)

    assert caught.value.field == field
    assert message in caught.value.message
    assert job_count(jobs_runtime) == 0


def test_job_defaults_and_next_run(jobs_runtime: Runtime) -> None:
    job = add_job(jobs_runtime, NOW, cron="0 7 * * 1-5")

    # 2026-05-04 is a Monday; 07:00 CDT is 12:00 UTC.
    assert job.next_run_at == utc(2026, 5, 4, 12, 0)
    assert job.profile_name == "DefaultDeliveryProfile"
    assert job.on_empty == "send"
    assert job.format == "csv"
    assert job.is_active is True


def test_duplicate_name_conflicts(jobs_runtime: Runtime) -> None:
    add_job(jobs_runtime, NOW)

    with pytest.raises(ConflictError) as caught:
        add_job(jobs_runtime, NOW)

    assert caught.value.field == "name"


def test_update_schedule_recomputes_next_run(jobs_runtime: Runtime) -> None:
    add_job(jobs_runtime, NOW, cron="0 7 * * *")

    with transaction(jobs_runtime.sessions) as session:
        job = update_job(
            session,
            jobs_runtime.settings,
            "Open orders",
            JobInput(run_at="2026-05-10T09:30", time_zone="Europe/Berlin"),
            NOW,
        )
        assert job.cron is None
        assert job.next_run_at == utc(2026, 5, 10, 7, 30)

        job = update_job(
            session,
            jobs_runtime.settings,
            "Open orders",
            JobInput(is_active=False),
            NOW,
        )
        assert job.next_run_at is None


def test_update_other_field_keeps_next_run(jobs_runtime: Runtime) -> None:
    add_job(jobs_runtime, NOW, cron="0 7 * * *")

    with transaction(jobs_runtime.sessions) as session:
        job = update_job(
            session,
            jobs_runtime.settings,
            "Open orders",
            JobInput(subject="Orders {{ run_date }}"),
            utc(2026, 5, 4, 12, 30),
        )
        # The 12:00 UTC slot is due and not yet run; editing keeps it due.
        assert job.next_run_at == utc(2026, 5, 4, 12, 0)


def test_rename_keeps_history(
    jobs_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    point_profile(jobs_runtime, start_sink().port)
    add_job(jobs_runtime, NOW)
    claimed = start_manual_run(
        jobs_runtime.sessions, "Open orders", owner="test", now=NOW, lease=600
    )
    Runner(jobs_runtime, clock=FakeClock(NOW)).execute(claimed)

    with transaction(jobs_runtime.sessions) as session:
        update_job(
            session,
            jobs_runtime.settings,
            "Open orders",
            JobInput(name="Orders still open"),
            NOW,
        )
    with jobs_runtime.sessions() as session:
        assert session.scalars(select(JobRun.job_name)).all() == ["Orders still open"]


def test_delete_running_job_conflicts(jobs_runtime: Runtime) -> None:
    add_job(jobs_runtime, NOW)
    start_manual_run(
        jobs_runtime.sessions, "Open orders", owner="t", now=NOW, lease=600
    )

    with pytest.raises(ConflictError), transaction(jobs_runtime.sessions) as session:
        delete_job(session, "Open orders", NOW)

    assert job_count(jobs_runtime) == 1


def run_now(runtime: Runtime, name: str = "Open orders") -> JobRun:
    claimed = start_manual_run(runtime.sessions, name, owner="test", now=NOW, lease=600)
    Runner(runtime, clock=FakeClock(NOW)).execute(claimed)
    with runtime.sessions() as session:
        run = session.get(JobRun, claimed.run_pk)
        assert run is not None
        return run


def test_empty_result_skipped_with_reason(
    jobs_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    point_profile(jobs_runtime, start_sink().port)
    add_job(
        jobs_runtime,
        NOW,
        report=sales_report("SELECT * FROM orders WHERE status = 'lost'"),
        on_empty="skip",
    )

    run = run_now(jobs_runtime)

    assert run.outcome == "skipped"
    assert run.rows == 0
    assert run.error == "the report returned no rows, and the job skips empty results"


def test_empty_result_sent_by_default(
    jobs_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    sink = start_sink()
    point_profile(jobs_runtime, sink.port)
    add_job(
        jobs_runtime,
        NOW,
        report=sales_report("SELECT * FROM orders WHERE status = 'lost'"),
        subject="{{ rows }} lost orders",
    )

    run = run_now(jobs_runtime)

    assert run.outcome == "succeeded"
    assert run.rows == 0


def test_profile_without_from_fails_clearly(jobs_runtime: Runtime) -> None:
    add_job(jobs_runtime, NOW)

    run = run_now(jobs_runtime)

    assert run.outcome == "failed"
    assert run.diagnosis is not None
    assert run.diagnosis["id"] == "profile-no-from"
    assert "'DefaultDeliveryProfile' has no From address" in run.diagnosis["cause"]


def test_inactive_profile_holds_email(
    jobs_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    from postroom.domain import profiles
    from postroom.schedule.views import run_views

    point_profile(jobs_runtime, start_sink().port)
    with transaction(jobs_runtime.sessions) as session:
        profiles.update_profile(
            session,
            jobs_runtime.secrets,
            "DefaultDeliveryProfile",
            profiles.ProfileInput(is_active=False),
        )
    add_job(jobs_runtime, NOW)

    run = run_now(jobs_runtime)

    with jobs_runtime.sessions() as session:
        (view,) = run_views(session, [run])
    assert view["report_outcome"] == "succeeded"
    assert view["outcome"] == "held"
    assert view["messages"][0]["held_reason"] == (
        "email profile 'DefaultDeliveryProfile' is inactive"
    )


def test_oversized_email_fails_before_queueing(
    tmp_path: Any, sales_db: Any, start_sink: Callable[..., SinkServer]
) -> None:
    from tests.schedule.helpers import job_runtime, make_sales_db

    big = make_sales_db(tmp_path / "big.db", rows=20_000)
    runtime = job_runtime(
        tmp_path,
        None,
        sales_db,
        report_max_message_bytes=200_000,
        data_sources={"big": f"sqlite:///{big}"},
    )
    sink = start_sink()
    point_profile(runtime, sink.port)
    add_job(
        runtime,
        NOW,
        report={"kind": "sql", "data_source": "big", "query": "SELECT * FROM orders"},
    )

    run = run_now(runtime)

    assert run.outcome == "failed"
    assert run.diagnosis is not None
    assert run.diagnosis["id"] == "report-size-limit"
    assert "grew past the size limit" in run.diagnosis["cause"]
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1
        from postroom.domain.models import OutboxMessage

        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    runtime.close()


def test_write_in_query_fails_run(jobs_runtime: Runtime) -> None:
    from postroom.domain import profiles

    with transaction(jobs_runtime.sessions) as session:
        profiles.update_profile(
            session,
            jobs_runtime.secrets,
            "DefaultDeliveryProfile",
            profiles.ProfileInput(from_address="reports@example.com"),
        )
    add_job(
        jobs_runtime,
        NOW,
        report=sales_report(
            "WITH x AS (SELECT 99, 'x', 'y', 1.0, 'open') INSERT INTO orders SELECT * FROM x"
        ),
    )

    run = run_now(jobs_runtime)

    assert run.outcome == "failed"
    assert run.diagnosis is not None
    assert run.diagnosis["id"] == "report-read-only"
    assert run.error is not None
    assert "the data source is read-only" in run.error


def test_profile_rename_moves_jobs(jobs_runtime: Runtime) -> None:
    from postroom.domain import profiles

    with transaction(jobs_runtime.sessions) as session:
        profiles.create_profile(
            session,
            jobs_runtime.secrets,
            profiles.ProfileInput(
                name="Reports", host="smtp.example.com", from_address="r@example.com"
            ),
        )
    add_job(jobs_runtime, NOW, profile="Reports")

    with transaction(jobs_runtime.sessions) as session:
        profiles.update_profile(
            session,
            jobs_runtime.secrets,
            "Reports",
            profiles.ProfileInput(name="Reporting"),
        )
        job = session.scalars(select(Job)).one()
        assert job.profile_name == "Reporting"

    with (
        pytest.raises(ConflictError) as caught,
        transaction(jobs_runtime.sessions) as session,
    ):
        profiles.delete_profile(session, "Reporting")
    assert "'Open orders'" in caught.value.message
    with transaction(jobs_runtime.sessions) as session:
        assert profiles.find_profile(session, "Reporting") is not None
