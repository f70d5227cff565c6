"""Every 4xx response: ``detail`` is a list whose ``loc`` names the fault's place."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from postroom.api.app import create_app
from postroom.domain.db import transaction
from postroom.domain.tokens import create_token
from postroom.runtime import Runtime


@pytest.fixture
def api(runtime: Runtime) -> Iterator[TestClient]:
    with transaction(runtime.sessions) as session:
        token = create_token(session, "tests")
    with TestClient(create_app(runtime)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        for name in ("Orders", "Billing"):
            created = client.post(
                "/api/profiles",
                json={
                    "name": name,
                    "host": "127.0.0.1",
                    "port": 2525,
                    "security": "none",
                    "from": "orders@example.com",
                },
            )
            assert created.status_code == 201, created.text
        job = {
            "name": "Daily",
            "cron": "0 7 * * *",
            "report": {"kind": "schedule-list"},
            "to": ["ops@example.com"],
        }
        assert client.post("/api/jobs", json=job).status_code == 201
        yield client


def only_error(answer: Any) -> dict[str, Any]:
    detail = answer.json()["detail"]
    assert isinstance(detail, list), detail
    assert len(detail) == 1
    error: dict[str, Any] = detail[0]
    assert set(error) >= {"loc", "msg", "type"}
    return error


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "loc"),
    [
        ("GET", "/api/profiles/Nope", None, 404, ["path", "name"]),
        ("PATCH", "/api/profiles/Nope", {"port": 25}, 404, ["path", "name"]),
        ("DELETE", "/api/profiles/Nope", None, 404, ["path", "name"]),
        (
            "DELETE",
            "/api/profiles/DefaultNotificationProfile",
            None,
            409,
            ["path", "name"],
        ),
        (
            "POST",
            "/api/profiles/Nope/test",
            {"to": "bob@example.com"},
            404,
            ["path", "name"],
        ),
        ("GET", "/api/profiles/Nope/oauth", None, 404, ["path", "name"]),
        ("GET", "/api/jobs/Nope", None, 404, ["path", "name"]),
        ("POST", "/api/jobs/Nope/run", None, 404, ["path", "name"]),
        ("GET", "/api/jobs/Daily/runs/7", None, 404, ["path", "id"]),
        ("GET", "/api/templates/Nope", None, 404, ["path", "name"]),
        ("GET", "/api/messages/7", None, 404, ["path", "id"]),
        ("GET", "/api/events/7", None, 404, ["path", "id"]),
        ("GET", "/api/presets/nope", None, 422, ["path", "name"]),
        ("GET", "/api/jobs/Daily/next?count=0", None, 422, ["query", "count"]),
        (
            "GET",
            "/api/jobs/Daily/next?after=2026-01-01T00:00",
            None,
            422,
            ["query", "after"],
        ),
        (
            "GET",
            "/api/reports/schedule-history?outcome=bogus",
            None,
            422,
            ["query", "outcome"],
        ),
        (
            "GET",
            "/api/reports/schedule-history?since=yesterday",
            None,
            422,
            ["query", "since"],
        ),
        # A body field that clashes with stored state stays in the body.
        ("PATCH", "/api/profiles/Orders", {"name": "Billing"}, 409, ["body", "name"]),
        ("PATCH", "/api/profiles/Orders", {"port": 0}, 422, ["body", "port"]),
        ("POST", "/api/profiles", {"name": "x", "host": "a b"}, 422, ["body", "host"]),
    ],
)
def test_error_location(
    api: TestClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    loc: list[str],
) -> None:
    answer = api.request(method, path, json=body)

    assert answer.status_code == status, answer.text
    assert only_error(answer)["loc"] == loc


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YTpi"}],
)
def test_401_has_list_shape(runtime: Runtime, headers: dict[str, str]) -> None:
    with TestClient(create_app(runtime)) as anonymous:
        answer = anonymous.get("/api/profiles", headers=headers)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    error = only_error(answer)
    assert error["loc"] == ["header", "Authorization"]
    assert error["type"] == "unauthorized"
    assert "token" in error["msg"]


def test_unreadable_body_is_400_with_list_shape(api: TestClient) -> None:
    # Not UTF-8, so FastAPI cannot even decode it as JSON text.
    answer = api.post(
        "/api/profiles",
        content=b'{"name": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )

    assert answer.status_code == 400, answer.text
    error = only_error(answer)
    assert error["loc"] == ["body"]
    assert error["type"] == "invalid_body"


def test_malformed_json_is_422_with_list_shape(api: TestClient) -> None:
    answer = api.post(
        "/api/profiles",
        content=b'{"name": ',
        headers={"Content-Type": "application/json"},
    )

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize(
    ("method", "path", "status", "loc"),
    [
        ("GET", "/api/nothing-here", 404, ["path"]),
        ("PUT", "/api/profiles", 405, ["method"]),
    ],
)
def test_routing_errors_have_list_shape(
    api: TestClient, method: str, path: str, status: int, loc: list[str]
) -> None:
    answer = api.request(method, path)

    assert answer.status_code == status
    assert only_error(answer)["loc"] == loc
    if status == 405:
        assert "GET" in answer.headers["Allow"]
