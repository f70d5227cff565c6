"""POST /api/messages with an idempotency key: one message however often sent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from postroom.api.app import create_app
from postroom.domain.db import transaction
from postroom.domain.models import OutboxMessage
from postroom.domain.tokens import create_token
from postroom.runtime import Runtime

BODY: dict[str, Any] = {
    "profile": "Orders",
    "to": ["bob@example.com"],
    "subject": "Order 42 shipped",
    "text": "On its way.",
}


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
        assert created.status_code == 201
        yield test_client


def message_count(runtime: Runtime) -> int:
    with transaction(runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


def test_repeat_returns_first_message(client: TestClient, any_runtime: Runtime) -> None:
    first = client.post("/api/messages", json=BODY | {"idempotency_key": "order-42"})
    again = client.post("/api/messages", json=BODY | {"idempotency_key": "order-42"})

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert message_count(any_runtime) == 1


def test_header_works_like_field(client: TestClient, any_runtime: Runtime) -> None:
    first = client.post("/api/messages", json=BODY, headers={"Idempotency-Key": "k-1"})
    again = client.post("/api/messages", json=BODY | {"idempotency_key": "k-1"})

    assert again.json()["id"] == first.json()["id"]
    assert message_count(any_runtime) == 1


def test_same_key_other_body_is_422(client: TestClient, any_runtime: Runtime) -> None:
    client.post("/api/messages", json=BODY | {"idempotency_key": "order-42"})

    other = client.post(
        "/api/messages", json=BODY | {"subject": "Other", "idempotency_key": "order-42"}
    )

    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"][-1] == "idempotency_key"
    assert message_count(any_runtime) == 1


def test_conflicting_header_and_field_is_422(client: TestClient) -> None:
    answer = client.post(
        "/api/messages",
        json=BODY | {"idempotency_key": "a"},
        headers={"Idempotency-Key": "b"},
    )

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == "idempotency_key"


def test_without_key_every_post_queues(
    client: TestClient, any_runtime: Runtime
) -> None:
    client.post("/api/messages", json=BODY)
    client.post("/api/messages", json=BODY)

    assert message_count(any_runtime) == 2


def test_racing_repeats_queue_once(client: TestClient, any_runtime: Runtime) -> None:
    answers: list[Any] = []
    start = threading.Barrier(8)

    def post() -> None:
        start.wait()
        answers.append(
            client.post("/api/messages", json=BODY | {"idempotency_key": "race-1"})
        )

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answer.status_code for answer in answers).count(202) == 1
    assert {answer.status_code for answer in answers} <= {200, 202}
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert message_count(any_runtime) == 1
