"""POST /api/diagnose: a pasted reply or error explained by the catalogue."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from postroom.api.app import create_app
from postroom.domain.db import transaction
from postroom.domain.tokens import create_token
from postroom.runtime import Runtime


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with transaction(runtime.sessions) as session:
        token = create_token(session, "tests")
    with TestClient(create_app(runtime)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def test_diagnose_returns_entry(client: TestClient) -> None:
    answer = client.post(
        "/api/diagnose",
        json={
            "text": "smtplib.SMTPDataError: (550, b'5.7.60 SMTP; Client does not "
            "have permissions to send as this sender')",
            "port": 587,
            "security": "starttls",
        },
    )

    assert answer.status_code == 200
    body = answer.json()
    assert body["id"] == "m365-send-as-denied"
    assert body["reply_code"] == 550
    assert body["enhanced_status"] == "5.7.60"
    assert body["setting"] == "from_address"
    assert body["transient"] is False


def test_diagnose_with_step(client: TestClient) -> None:
    answer = client.post(
        "/api/diagnose",
        json={"text": "Connection refused", "step": "connect", "port": 2525},
    )

    assert answer.status_code == 200
    assert answer.json()["id"] == "connection-refused"
    assert "port 2525" in answer.json()["cause"]


def test_diagnose_empty_text_is_422(client: TestClient) -> None:
    answer = client.post("/api/diagnose", json={"text": " "})

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "text"]


def test_diagnose_needs_token(runtime: Runtime) -> None:
    with TestClient(create_app(runtime)) as anonymous:
        answer = anonymous.post("/api/diagnose", json={"text": "530 5.7.0 x"})

    assert answer.status_code == 401
