"""The jobs and reports API: CRUD, run now, next runs, report downloads."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient

from postroom.api.app import create_app
from postroom.devserver.sink import SinkServer
from postroom.domain.db import transaction
from postroom.domain.tokens import create_token
from postroom.outbox.worker import Worker
from postroom.runtime import Runtime
from postroom.schedule.runs import start_manual_run
from tests.schedule.helpers import job_runtime, make_sales_db, point_profile

SOURCE_PASSWORD = "Src-Pw-7731"


@pytest.fixture
def api_runtime(tmp_path: Path) -> Iterator[Runtime]:
    sales = make_sales_db(tmp_path / "sales.db")
    opened = job_runtime(
        tmp_path,
        None,
        sales,
        data_sources={
            "warehouse": f"postgresql://reader:{SOURCE_PASSWORD}@127.0.0.1:1/stock"
        },
    )
    yield opened
    opened.close()


@pytest.fixture
def client(api_runtime: Runtime) -> Iterator[TestClient]:
    with transaction(api_runtime.sessions) as session:
        token = create_token(session, "tests")
    with TestClient(create_app(api_runtime)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def job_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Open orders",
        "client": "Acme",
        "cron": "0 7 * * 1-5",
        "time_zone": "America/Chicago",
        "report": {
            "kind": "sql",
            "data_source": "sales",
            "query": "SELECT * FROM orders ORDER BY id",
        },
        "format": "csv",
        "to": ["ops@example.com"],
        "subject": "{{ job }}: {{ rows }} rows",
    }
    body.update(changes)
    return body


def test_job_crud(client: TestClient) -> None:
    created = client.post("/api/jobs", json=job_body())
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == "/api/jobs/Open%20orders"
    job = created.json()
    assert job["schedule"] == "At 07:00, Monday through Friday"
    assert "T07:00:00-0" in job["next_run_local"]
    assert job["profile"] == "DefaultDeliveryProfile"
    assert job["last_run"] is None

    listed = client.get("/api/jobs").json()
    assert [item["name"] for item in listed] == ["Open orders"]
    assert client.get("/api/jobs", params={"client": "Other"}).json() == []

    changed = client.patch(
        "/api/jobs/Open orders", json={"format": "xlsx", "cc": ["boss@example.com"]}
    )
    assert changed.status_code == 200
    assert changed.json()["format"] == "xlsx"
    assert changed.json()["cc"] == ["boss@example.com"]

    shown = client.get("/api/jobs/Open orders").json()
    assert len(shown["next_runs"]) == 5
    assert shown["recent_runs"] == []

    assert client.delete("/api/jobs/Open orders").status_code == 204
    assert client.get("/api/jobs/Open orders").status_code == 404


@pytest.mark.parametrize(
    ("changes", "loc", "message"),
    [
        ({"cron": "0 0 30 2 *"}, ["body", "cron"], "never fires"),
        ({"cron": "*/5 * * * * *"}, ["body", "cron"], "six fields"),
        ({"time_zone": "Mars/Olympus"}, ["body", "time_zone"], "IANA time zone"),
        (
            {
                "report": {
                    "kind": "sql",
                    "data_source": "sales",
                    "query": "DROP TABLE orders",
                }
            },
            ["body", "report.query"],
            "must be a single SELECT statement",
        ),
    ],
)
def test_invalid_job_is_422(
    client: TestClient, changes: dict[str, Any], loc: list[str], message: str
) -> None:
    answer = client.post("/api/jobs", json=job_body(**changes))

    assert answer.status_code == 422
    detail = answer.json()["detail"][0]
    assert detail["loc"] == loc
    assert message in detail["msg"]
    assert client.get("/api/jobs").json() == []


def test_unknown_report_kind_is_422(client: TestClient) -> None:
    answer = client.post("/api/jobs", json=job_body(report={"kind": "magic"}))

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][:2] == ["body", "report"]


def test_next_runs_show_dst_change(client: TestClient) -> None:
    client.post("/api/jobs", json=job_body(cron="30 2 * * *"))

    answer = client.get(
        "/api/jobs/Open orders/next",
        params={"count": 3, "after": "2026-03-07T00:00:00Z"},
    )

    assert answer.status_code == 200
    runs = answer.json()["runs"]
    assert [run["local"] for run in runs] == [
        "2026-03-07T02:30:00-06:00",
        "2026-03-08T03:00:00-05:00",
        "2026-03-09T02:30:00-05:00",
    ]
    assert [run["utc"] for run in runs] == [
        "2026-03-07T08:30:00Z",
        "2026-03-08T08:00:00Z",
        "2026-03-09T07:30:00Z",
    ]
    assert [run["abbreviation"] for run in runs] == ["CST", "CDT", "CDT"]
    assert "does not exist" in runs[1]["note"]


def test_schedule_preview_before_saving(client: TestClient) -> None:
    answer = client.post(
        "/api/schedules/next",
        json={
            "cron": "30 1 * * *",
            "time_zone": "America/Chicago",
            "count": 2,
            "after": "2026-10-31T12:00:00Z",
        },
    )

    assert answer.status_code == 200
    runs = answer.json()["runs"]
    assert [run["utc"] for run in runs] == [
        "2026-11-01T06:30:00Z",
        "2026-11-02T07:30:00Z",
    ]
    assert "first occurrence" in runs[0]["note"]

    refused = client.post("/api/schedules/next", json={"cron": "0 0 31 2 *"})
    assert refused.status_code == 422


def test_run_now_and_delivery(
    client: TestClient, api_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    sink = start_sink()
    point_profile(api_runtime, sink.port)
    client.post("/api/jobs", json=job_body())

    started = client.post("/api/jobs/Open orders/run")
    assert started.status_code == 202
    location = started.headers["Location"]
    assert location == f"/api/jobs/Open%20orders/runs/{started.json()['id']}"

    # The test client runs the background task before it returns.
    run = client.get(location).json()
    assert run["outcome"] == "sending"
    assert run["report_outcome"] == "succeeded"
    assert run["rows"] == 25

    asyncio.run(Worker(api_runtime).drain())
    run = client.get(location).json()
    assert run["outcome"] == "succeeded"
    assert run["delivery"] == "delivered"
    recipient = run["messages"][0]["recipients"][0]
    assert (
        recipient["reply_text"] == f"2.0.0 OK queued as {sink.handler.messages[0].id}"
    )

    runs = client.get("/api/jobs/Open orders/runs").json()
    assert [item["id"] for item in runs] == [run["id"]]


def test_run_now_while_running_is_409(client: TestClient, api_runtime: Runtime) -> None:
    from postroom.clock import utcnow

    client.post("/api/jobs", json=job_body())
    start_manual_run(
        api_runtime.sessions, "Open orders", owner="other", now=utcnow(), lease=600
    )

    answer = client.post("/api/jobs/Open orders/run")

    assert answer.status_code == 409
    assert "already running" in answer.json()["detail"][0]["msg"]


def test_reports_json_csv_xlsx(
    client: TestClient, api_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    point_profile(api_runtime, start_sink().port)
    client.post("/api/jobs", json=job_body())
    client.post("/api/jobs/Open orders/run")

    listed = client.get("/api/reports/schedule-list")
    assert listed.status_code == 200
    (item,) = listed.json()
    assert item["job"] == "Open orders"
    assert item["schedule"] == "At 07:00, Monday through Friday"
    assert item["cron"] == "0 7 * * 1-5"
    assert item["last_outcome"] == "sending"
    assert item["to"] == ["ops@example.com"]

    as_csv = client.get("/api/reports/schedule-list", params={"format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert (
        'attachment; filename="schedule-list.csv"'
        in as_csv.headers["content-disposition"]
    )
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert rows[0]["job"] == "Open orders"
    assert rows[0]["recipients"] == "to: ops@example.com"

    history = client.get("/api/reports/schedule-history", params={"since": "1h"})
    assert history.status_code == 200
    (run,) = history.json()["runs"]
    assert run["job"] == "Open orders"

    as_xlsx = client.get(
        "/api/reports/schedule-history", params={"since": "1h", "format": "xlsx"}
    )
    assert as_xlsx.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(as_xlsx.content)).active
    assert sheet is not None
    header = [cell.value for cell in sheet[1]]
    first = dict(zip(header, [cell.value for cell in sheet[2]], strict=True))
    assert first["job"] == "Open orders"
    assert first["recipient"] == "ops@example.com"

    filtered = client.get(
        "/api/reports/schedule-history", params={"since": "1h", "outcome": "failed"}
    )
    assert filtered.json()["runs"] == []
    bad = client.get("/api/reports/schedule-history", params={"since": "yesterday"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "since"]


def test_data_source_password_never_shown(
    client: TestClient, api_runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    from postroom.domain import profiles

    with transaction(api_runtime.sessions) as session:
        profiles.update_profile(
            session,
            api_runtime.secrets,
            "DefaultDeliveryProfile",
            profiles.ProfileInput(from_address="reports@example.com"),
        )
    caplog.set_level(logging.DEBUG)
    body = job_body(
        report={"kind": "sql", "data_source": "warehouse", "query": "SELECT 1"}
    )
    created = client.post("/api/jobs", json=body)
    started = client.post("/api/jobs/Open orders/run")
    run = client.get(started.headers["Location"]).json()
    sources = client.get("/api/data-sources")
    history = client.get("/api/reports/schedule-history", params={"since": "1h"})

    assert sources.json() == [
        {"name": "sales", "dialect": "sqlite"},
        {"name": "warehouse", "dialect": "postgresql"},
    ]
    assert run["outcome"] == "failed"
    assert run["diagnosis"]["id"] == "report-data-source-unreachable"
    for text in (
        created.text,
        started.text,
        str(run),
        sources.text,
        history.text,
        caplog.text,
    ):
        assert SOURCE_PASSWORD not in text


def test_serve_runs_scheduler(
    api_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    from datetime import timedelta

    from postroom.clock import utcnow
    from tests.schedule.helpers import add_job

    point_profile(api_runtime, start_sink().port)
    now = utcnow()
    due = (now + timedelta(seconds=1)).replace(tzinfo=None, microsecond=0)
    add_job(api_runtime, now, run_at=due.isoformat(), time_zone="UTC")
    with transaction(api_runtime.sessions) as session:
        token = create_token(session, "serve")

    with TestClient(create_app(api_runtime, run_scheduler=True)) as served:
        served.headers["Authorization"] = f"Bearer {token}"
        deadline = time.monotonic() + 30
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = served.get("/api/jobs/Open orders/runs").json()
            if runs and runs[0]["outcome"] != "running":
                break
            time.sleep(0.1)

    assert [run["outcome"] for run in runs] == ["sending"]
    assert runs[0]["trigger"] == "schedule"


def test_refused_email_run_is_failed(
    client: TestClient,
    api_runtime: Runtime,
    start_scripted: Callable[..., Any],
) -> None:
    server = start_scripted(replies={"RCPT": "550 5.1.1 <ops@example.com>: unknown"})
    point_profile(api_runtime, server.port)
    client.post("/api/jobs", json=job_body())
    location = client.post("/api/jobs/Open orders/run").headers["Location"]

    asyncio.run(Worker(api_runtime).drain())
    run = client.get(location).json()

    assert run["outcome"] == "failed"
    assert run["failed_in"] == "delivery"
    assert run["report_outcome"] == "succeeded"
    assert "550 5.1.1 <ops@example.com>: unknown" in run["error"]
    assert run["diagnosis"]["cause"]
    listed = client.get("/api/jobs").json()
    assert listed[0]["last_run"]["outcome"] == "failed"
