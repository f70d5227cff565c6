"""Job templates render in the template render processes, within their limits.

Some templates build strings of hundreds of MB in one call, or loop for
minutes. They fail with a reason when a job is saved through the API and
when a stored job runs, instead of running in the service's own process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from postroom.api.app import create_app
from postroom.domain.db import transaction
from postroom.domain.scheduling import Job, JobRun, RunOutcome
from postroom.domain.tokens import create_token
from postroom.runtime import Runtime
from postroom.schedule.runner import Runner
from postroom.schedule.runs import start_manual_run
from tests.schedule.helpers import FakeClock, add_job, job_runtime, utc

NOW = utc(2026, 3, 2, 12, 0)
# About 10**9 loop steps: far longer than the render process's time limit
# of 1 s here, which ends it.
ENDLESS_LOOP = (
    "{% for i in range(100000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
)


@pytest.fixture
def limited_runtime(tmp_path: Path, sales_db: Path) -> Iterator[Runtime]:
    opened = job_runtime(tmp_path, None, sales_db, render_timeout_seconds=1.0)
    yield opened
    opened.close()


@pytest.fixture
def client(limited_runtime: Runtime) -> Iterator[TestClient]:
    with transaction(limited_runtime.sessions) as session:
        token = create_token(session, "tests")
    with TestClient(create_app(limited_runtime)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def job_request(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Orders",
        "cron": "0 7 * * *",
        "report": {"kind": "schedule-list"},
        "to": ["ops@example.com"],
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ 'x'|center(300000000)|length }}", "center would produce more than"),
        ("{{ '%0300000000d'|format(1)|length }}", "width or precision would produce"),
        (
            "{{ ('x' * 100000)|replace('x', 'x' * 2000)|length }}",
            "replace would produce more than",
        ),
        ("{{ 'x'.ljust(300000000)|length }}", "str.ljust would produce more than"),
        ("{{ ('%0300000000d' % 1)|length }}", "width or precision would produce"),
        ("{{ '{:>300000000}'.format(1)|length }}", "width would produce more than"),
        (ENDLESS_LOOP, "rendering took longer than 1 seconds"),
    ],
)
def test_saving_runaway_body_is_422(
    client: TestClient, template: str, reason: str
) -> None:
    answer = client.post("/api/jobs", json=job_request(body=template))

    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "body"]
    assert reason in detail["msg"]
    assert client.get("/api/jobs").json() == []


def test_saving_runaway_subject_is_422(client: TestClient) -> None:
    answer = client.post("/api/jobs", json=job_request(subject=ENDLESS_LOOP))

    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "subject"]
    assert "took longer than 1 seconds" in detail["msg"]


def test_service_answers_after_runaway(client: TestClient) -> None:
    client.post("/api/jobs", json=job_request(body=ENDLESS_LOOP))

    saved = client.post("/api/jobs", json=job_request(body="{{ rows }} rows"))

    assert saved.status_code == 201, saved.text


def test_runaway_template_fails_run(limited_runtime: Runtime) -> None:
    add_job(limited_runtime, NOW, report={"kind": "schedule-list"})
    # A template stored before it was checked, or by another version.
    with transaction(limited_runtime.sessions) as session:
        session.execute(
            update(Job)
            .where(Job.name == "Open orders")
            .values(body_template=ENDLESS_LOOP)
        )

    claimed = start_manual_run(
        limited_runtime.sessions, "Open orders", owner="test", now=NOW, lease=600
    )
    result = Runner(limited_runtime, clock=FakeClock(NOW)).execute(claimed)

    assert result.outcome == RunOutcome.FAILED
    assert result.message_pks == []
    assert result.diagnosis is not None
    assert result.diagnosis["id"] == "template-error"
    assert "the body template failed" in result.diagnosis["cause"]
    assert "took longer than 1 seconds" in result.diagnosis["cause"]
    with limited_runtime.sessions() as session:
        run = session.get(JobRun, claimed.run_pk)
        assert run is not None
        assert run.outcome == RunOutcome.FAILED
