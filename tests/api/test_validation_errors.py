"""422 responses to malformed requests keep loc, msg and type, never the input.

FastAPI's own response echoes the submitted value, which for these requests
is a password, a client secret or a refresh token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from postroom.api.app import create_app
from postroom.domain.db import transaction
from postroom.domain.tokens import create_token
from postroom.runtime import Runtime

SECRET = "Sup3r-Secr3t-Value!"


@pytest.fixture
def client(any_runtime: Runtime) -> Iterator[TestClient]:
    with transaction(any_runtime.sessions) as session:
        token = create_token(session, "tests")
    with TestClient(create_app(any_runtime)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        created = test_client.post(
            "/api/profiles",
            json={
                "name": "Orders",
                "host": "127.0.0.1",
                "port": 2525,
                "security": "none",
                "from": "orders@example.com",
            },
        )
        assert created.status_code == 201, created.text
        yield test_client


@pytest.mark.parametrize(
    ("method", "path", "body", "loc", "error_type"),
    [
        (
            "POST",
            "/api/probe",
            {"login": "alice", "password": SECRET},
            ["body", "host"],
            "missing",
        ),
        (
            "POST",
            "/api/profiles",
            {"name": "p", "host": "127.0.0.1", "pasword": SECRET},
            ["body", "pasword"],
            "extra_forbidden",
        ),
        (
            "PATCH",
            "/api/profiles/Orders",
            {"oauth_client_secret": [SECRET]},
            ["body", "oauth_client_secret"],
            "string_type",
        ),
        (
            "PATCH",
            "/api/profiles/Orders",
            {"oauth_refresh_token": {"token": SECRET}},
            ["body", "oauth_refresh_token"],
            "string_type",
        ),
        (
            "POST",
            "/api/profiles",
            {"name": "p", "password": SECRET, "confirm_password": SECRET, "port": "x"},
            ["body", "port"],
            "int_parsing",
        ),
        (
            "POST",
            "/api/probe",
            {"host": "127.0.0.1", "password": SECRET, "timeout": {"s": SECRET}},
            ["body", "timeout"],
            "float_type",
        ),
    ],
)
def test_validation_error_hides_input(
    client: TestClient,
    method: str,
    path: str,
    body: dict[str, Any],
    loc: list[str],
    error_type: str,
) -> None:
    answer = client.request(method, path, json=body)

    assert answer.status_code == 422
    assert SECRET not in answer.text
    details = answer.json()["detail"]
    assert len(details) == 1
    detail = details[0]
    assert detail["loc"] == loc
    assert detail["type"] == error_type
    assert detail["msg"]
    assert "input" not in detail


def test_invalid_json_hides_parser_context(client: TestClient) -> None:
    answer = client.post(
        "/api/messages",
        content=f'{{"profile": "Orders", "text": "{SECRET}',
        headers={"Content-Type": "application/json"},
    )

    assert answer.status_code == 422
    assert SECRET not in answer.text
    detail = answer.json()["detail"][0]
    assert detail["type"] == "json_invalid"
    assert detail["loc"][0] == "body"
    assert "input" not in detail
    assert "ctx" not in detail


def test_schema_context_is_kept(client: TestClient) -> None:
    answer = client.post(
        "/api/profiles", json={"name": "p", "host": "127.0.0.1", "security": "ssl"}
    )

    assert answer.status_code == 422
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "security"]
    assert detail["ctx"]["expected"] == "'none', 'starttls' or 'tls'"
    assert "input" not in detail
    assert json.dumps(detail).count("ssl") == 0
