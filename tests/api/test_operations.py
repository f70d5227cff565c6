"""The API for delivery operations: limits, retry, cancel and /metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from postroom.api.app import create_app
from postroom.domain.db import transaction
from postroom.domain.tokens import create_token
from postroom.runtime import Runtime
from tests.outbox.helpers import drain
from tests.peers.scripted import ScriptedServer


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with transaction(runtime.sessions) as session:
        token = create_token(session, "tests")
    with TestClient(create_app(runtime)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def profile_body(port: int, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Orders",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": "Orders <orders@example.com>",
        "connect_timeout": 2,
        "command_timeout": 2,
    }
    body.update(changes)
    return body


def queue_message(client: TestClient) -> int:
    answer = client.post(
        "/api/messages",
        json={"profile": "Orders", "to": ["bob@example.com"], "text": "Hi"},
    )
    assert answer.status_code == 202
    return int(answer.json()["id"])


def test_limits_stored_shown_and_cleared(client: TestClient) -> None:
    created = client.post(
        "/api/profiles",
        json=profile_body(
            2525,
            max_connections=2,
            pool_idle_timeout=15,
            max_messages_per_second=5,
            max_messages_per_minute=100,
            max_messages_per_day=10000,
            max_recipients_per_message=500,
        ),
    )
    cleared = client.patch(
        "/api/profiles/Orders",
        json={"max_messages_per_second": None, "max_messages_per_minute": 0},
    )

    assert created.status_code == 201
    body = created.json()
    assert body["max_connections"] == 2
    assert body["pool_idle_timeout"] == 15
    assert body["max_messages_per_second"] == 5
    assert body["max_messages_per_minute"] == 100
    assert body["max_messages_per_day"] == 10000
    assert body["max_recipients_per_message"] == 500
    assert cleared.status_code == 200
    assert cleared.json()["max_messages_per_second"] is None
    assert cleared.json()["max_messages_per_minute"] is None
    assert cleared.json()["max_messages_per_day"] == 10000


def test_new_profile_has_default_limits(client: TestClient) -> None:
    body = client.post("/api/profiles", json=profile_body(2525)).json()

    assert body["max_connections"] == 4
    assert body["pool_idle_timeout"] == 60
    assert body["max_messages_per_second"] is None
    assert body["max_recipients_per_message"] is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": 101}, "max_connections"),
        ({"pool_idle_timeout": -1}, "pool_idle_timeout"),
        ({"max_messages_per_second": -5}, "max_messages_per_second"),
        ({"max_messages_per_minute": -1}, "max_messages_per_minute"),
        ({"max_messages_per_day": -1}, "max_messages_per_day"),
        ({"max_recipients_per_message": -2}, "max_recipients_per_message"),
        ({"max_messages_per_day": "lots"}, "max_messages_per_day"),
    ],
)
def test_invalid_limit_is_422_with_field(
    client: TestClient, changes: dict[str, Any], field: str
) -> None:
    answer = client.post("/api/profiles", json=profile_body(2525, **changes))

    assert answer.status_code == 422
    locations = [error["loc"][-1] for error in answer.json()["detail"]]
    assert field in locations
    assert client.get("/api/profiles/Orders").status_code == 404


def test_cancel_queued_then_conflict(client: TestClient) -> None:
    client.post("/api/profiles", json=profile_body(2525))
    message_pk = queue_message(client)

    cancelled = client.post(f"/api/messages/{message_pk}/cancel")
    again = client.post(f"/api/messages/{message_pk}/cancel")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["recipients"][0]["status"] == "cancelled"
    assert again.status_code == 409
    assert again.json()["detail"][0]["loc"] == ["body", "status"]
    assert "already cancelled" in again.json()["detail"][0]["msg"]


def test_cancelled_message_is_not_sent(
    client: TestClient,
    runtime: Runtime,
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted()
    client.post("/api/profiles", json=profile_body(server.port))
    message_pk = queue_message(client)
    client.post(f"/api/messages/{message_pk}/cancel")

    drain(runtime)

    assert not server.messages
    assert client.get(f"/api/messages/{message_pk}").json()["status"] == "cancelled"


def test_retry_failed_message_sends_it(
    client: TestClient,
    runtime: Runtime,
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(
        replies={"RCPT": ["550 5.1.1 User unknown", "250 2.1.5 OK"]}
    )
    client.post("/api/profiles", json=profile_body(server.port))
    message_pk = queue_message(client)
    drain(runtime)
    failed = client.get(f"/api/messages/{message_pk}").json()

    retried = client.post(f"/api/messages/{message_pk}/retry")
    drain(runtime)
    sent = client.get(f"/api/messages/{message_pk}").json()
    again = client.post(f"/api/messages/{message_pk}/retry")

    assert failed["status"] == "failed"
    assert retried.status_code == 200
    assert retried.json()["status"] == "queued"
    assert retried.json()["recipients"][0]["status"] == "pending"
    assert sent["status"] == "sent"
    assert [attempt["outcome"] for attempt in sent["attempts"]] == ["failed", "sent"]
    assert again.status_code == 409
    assert "accepted it for every recipient" in again.json()["detail"][0]["msg"]


def test_retry_held_message_is_409(client: TestClient) -> None:
    client.post("/api/profiles", json=profile_body(2525, is_active=False))
    message_pk = queue_message(client)

    answer = client.post(f"/api/messages/{message_pk}/retry")

    assert answer.status_code == 409
    assert "is inactive" in answer.json()["detail"][0]["msg"]


def test_actions_on_missing_message_are_404(client: TestClient) -> None:
    assert client.post("/api/messages/999/retry").status_code == 404
    assert client.post("/api/messages/999/cancel").status_code == 404


def test_metrics_by_profile(
    client: TestClient,
    runtime: Runtime,
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted()
    client.post("/api/profiles", json=profile_body(server.port))
    queue_message(client)
    drain(runtime)
    queue_message(client)

    answer = client.get("/metrics", headers={"Authorization": ""})

    text = answer.text
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert 'postroom_messages{profile="Orders",status="sent"} 1.0' in text
    assert 'postroom_messages{profile="Orders",status="queued"} 1.0' in text
    assert 'postroom_messages{profile="Orders",status="held"} 0.0' in text
    assert 'postroom_messages{profile="Orders",status="failed"} 0.0' in text
    assert 'postroom_oldest_due_message_age_seconds{profile="Orders"}' in text
    assert 'postroom_delivery_attempts_total{outcome="sent",profile="Orders"}' in text
    assert (
        'postroom_delivery_attempt_seconds_bucket{le="0.005",profile="Orders"}' in text
    )
    assert "postroom_pool_connections" in text
    assert "bob@example.com" not in text


def test_release_held_messages_of_profile(
    client: TestClient, runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(
        extensions=["AUTH PLAIN LOGIN"],
        replies={
            "AUTH": [
                "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication "
                "is disabled for the Tenant.",
                "235 2.7.0 Authentication successful",
            ]
        },
    )
    client.post(
        "/api/profiles",
        json=profile_body(
            server.port, login="alice", password="pw-1", confirm_password="pw-1"
        ),
    )
    message_pk = queue_message(client)
    drain(runtime)
    held = client.get(f"/api/messages/{message_pk}").json()

    released = client.post("/api/profiles/Orders/release")
    drain(runtime)

    assert held["status"] == "held"
    assert (
        "SMTP AUTH" in held["held_reason"]
        or "Authenticated SMTP" in held["held_reason"]
    )
    assert released.status_code == 200
    assert released.json() == {"released": 1}
    assert client.get(f"/api/messages/{message_pk}").json()["status"] == "sent"


def test_release_inactive_profile_is_409(client: TestClient) -> None:
    client.post("/api/profiles", json=profile_body(2525, is_active=False))

    answer = client.post("/api/profiles/Orders/release")

    assert answer.status_code == 409
    assert "is inactive" in answer.json()["detail"][0]["msg"]
