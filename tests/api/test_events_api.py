"""Events over the HTTP API, down to a real SMTP server."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from postroom.api.app import create_app
from postroom.devserver.sink import SinkServer
from postroom.domain.db import transaction
from postroom.domain.tokens import create_token
from postroom.outbox.worker import Worker
from postroom.runtime import Runtime
from tests.notifications import ORDER, shipped_template
from tests.peers.service import running_service


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with transaction(runtime.sessions) as session:
        token = create_token(session, "tests")
    with TestClient(create_app(runtime)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def profile_body(port: int, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Shop",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": "Shop <orders@shop.example>",
        "connect_timeout": 2,
        "command_timeout": 2,
    }
    body.update(changes)
    return body


def event_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "order.shipped",
        "client": "acme",
        "data": ORDER,
        "idempotency_key": "order-42-shipped",
    }
    body.update(changes)
    return body


def parse(content: bytes) -> Any:
    return email.message_from_bytes(content, policy=email.policy.default)


def test_event_over_http_reaches_smtp_server(
    runtime: Runtime, tmp_path: Path, start_sink: Callable[..., SinkServer]
) -> None:
    shop = start_sink()
    default = start_sink()
    with transaction(runtime.sessions) as session:
        token = create_token(session, "business-system")
    headers = {"Authorization": f"Bearer {token}"}
    invoice = base64.b64encode(b"%PDF-1.7 invoice 42").decode()
    data = {
        **ORDER,
        "order": {
            **ORDER["order"],
            "invoice": {
                "filename": "Rechnung Nr. 42 für Jürgen.pdf",
                "content": invoice,
            },
        },
    }

    with running_service(runtime, tmp_path / "service", worker=True) as base:
        http = httpx.Client(base_url=base, headers=headers, timeout=30)
        assert (
            http.post("/api/profiles", json=profile_body(shop.port)).status_code == 201
        )
        assert (
            http.patch(
                "/api/profiles/DefaultNotificationProfile",
                json=profile_body(default.port, name="DefaultNotificationProfile"),
            ).status_code
            == 200
        )
        created = http.post(
            "/api/templates",
            json=shipped_template(
                client="acme",
                text_body="Hello {{ customer.name }}, order {{ order.id }} is on its way.",
                cc=["ops@shop.example"],
                attachments=[{"source": "order.invoice"}],
                list_unsubscribe=[
                    "https://shop.example/unsubscribe?order={{ order.id }}"
                ],
            ),
        )
        assert created.status_code == 201, created.text

        answer = http.post("/api/events", json=event_body(data=data))
        assert answer.status_code == 202, answer.text
        (message_pk,) = answer.json()["message_ids"]
        status = None
        for _ in range(300):
            status = http.get(f"/api/messages/{message_pk}").json()["status"]
            if status == "sent":
                break
            time.sleep(0.1)

    assert status == "sent"
    assert default.handler.messages == []
    (received,) = shop.handler.messages
    assert received.mail_from == "orders@shop.example"
    assert received.rcpt_tos == ["juergen@example.com", "ops@shop.example"]
    message = parse(received.content)
    assert message["Subject"] == "Order 42 has shipped"
    assert message["From"].addresses[0].addr_spec == "orders@shop.example"
    assert message["To"].addresses[0].display_name == "Jürgen Müller"
    assert message["Cc"].addresses[0].addr_spec == "ops@shop.example"
    assert message["List-Unsubscribe"] == "<https://shop.example/unsubscribe?order=42>"
    assert message.get_body(("plain",)).get_content() == (
        "Hello Jürgen Müller, order 42 is on its way.\r\n"
    )
    assert "<li>Teapot</li>" in message.get_body(("html",)).get_content()
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "Rechnung Nr. 42 für Jürgen.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == b"%PDF-1.7 invoice 42"


def test_repeat_returns_first_answer(
    client: TestClient, start_sink: Callable[..., SinkServer]
) -> None:
    client.post("/api/profiles", json=profile_body(start_sink().port))
    client.post("/api/templates", json=shipped_template())

    first = client.post("/api/events", json=event_body())
    second = client.post("/api/events", json=event_body())

    assert first.status_code == 202
    assert second.status_code == 202
    assert second.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(client.get("/api/messages").json()) == 1


def test_repeat_with_other_body_is_422(
    client: TestClient, start_sink: Callable[..., SinkServer]
) -> None:
    client.post("/api/profiles", json=profile_body(start_sink().port))
    client.post("/api/templates", json=shipped_template())
    client.post("/api/events", json=event_body())

    answer = client.post("/api/events", json=event_body(client="globex"))

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "idempotency_key"]
    assert len(client.get("/api/messages").json()) == 1


def test_batch_form(client: TestClient, start_sink: Callable[..., SinkServer]) -> None:
    client.post("/api/profiles", json=profile_body(start_sink().port))
    client.post("/api/templates", json=shipped_template())

    answer = client.post(
        "/api/events",
        json={
            "events": [
                event_body(idempotency_key="a"),
                event_body(idempotency_key="b", type="ticket.answered"),
            ]
        },
    )

    assert answer.status_code == 202
    first, second = answer.json()["results"]
    assert len(first["message_ids"]) == 1
    assert second["message_ids"] == []
    assert second["detail"].startswith("no active template matches event type")


def test_batch_error_names_event(
    client: TestClient, start_sink: Callable[..., SinkServer]
) -> None:
    client.post("/api/profiles", json=profile_body(start_sink().port))
    client.post("/api/templates", json=shipped_template())

    answer = client.post(
        "/api/events",
        json={"events": [event_body(idempotency_key="a"), event_body(data={})]},
    )

    assert answer.status_code == 422
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "events[1].data"]
    assert "'order' is undefined" in detail["msg"]
    assert client.get("/api/events").json() == []
    assert client.get("/api/messages").json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"client": "acme"}, "type"),
        ({"type": "order shipped"}, "type"),
        ({"type": "order.shipped", "locale": "??"}, "locale"),
        ({"type": "order.shipped", "idempotency_key": ""}, "idempotency_key"),
        ({"type": "order.shipped", "idempotency_key": "a\r\nb"}, "idempotency_key"),
        ({"type": "order.shipped", "data": []}, "data"),
        ({"type": "order.shipped", "surprise": 1}, "surprise"),
        ({"type": "order.shipped", "events": [event_body()]}, "events"),
        ({"events": []}, "events"),
        ({"events": [{"client": "x"}]}, "type"),
    ],
)
def test_invalid_event_is_422(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    answer = client.post("/api/events", json=body)

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == field
    assert client.get("/api/events").json() == []


def test_held_message_visible_then_sent(
    client: TestClient, runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    client.post("/api/profiles", json=profile_body(server.port, is_active=False))
    client.post("/api/templates", json=shipped_template())

    answer = client.post("/api/events", json=event_body()).json()
    (message_pk,) = answer["message_ids"]
    held = client.get("/api/messages", params={"status": "held"}).json()
    event = client.get(f"/api/events/{answer['event_id']}").json()

    assert [message["id"] for message in held] == [message_pk]
    assert held[0]["held_reason"] == "email profile 'Shop' is inactive"
    assert event["messages"][0]["status"] == "held"
    assert event["messages"][0]["held_reason"] == "email profile 'Shop' is inactive"
    assert event["data"] == ORDER

    client.patch("/api/profiles/Shop", json={"is_active": True})
    asyncio.run(Worker(runtime).drain())

    assert client.get(f"/api/messages/{message_pk}").json()["status"] == "sent"
    assert len(server.handler.messages) == 1


def test_missing_event_is_404(client: TestClient) -> None:
    assert client.get("/api/events/999").status_code == 404


def test_openapi_lists_event_and_template_paths(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    for path in (
        "/api/events",
        "/api/events/{id}",
        "/api/templates",
        "/api/templates/preview",
        "/api/templates/{name}",
        "/api/templates/{name}/preview",
    ):
        assert path in paths


def test_password_never_in_answers_or_logs(
    client: TestClient,
    runtime: Runtime,
    start_sink: Callable[..., SinkServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    password = "Pr0file-Secret-77"
    server = start_sink(users={"alice": password})
    caplog.set_level("DEBUG", logger="postroom")
    client.post(
        "/api/profiles",
        json=profile_body(
            server.port, login="alice", password=password, confirm_password=password
        ),
    )
    client.post("/api/templates", json=shipped_template())

    answers = [
        client.post("/api/templates/shipped/preview", json={"raw": True}),
        client.post("/api/events", json=event_body()),
        client.post("/api/events", json=event_body()),
        client.post("/api/events", json=event_body(data={})),
        client.get("/api/events/1"),
        client.get("/api/templates/shipped"),
    ]
    asyncio.run(Worker(runtime).drain())

    assert server.handler.messages[0].login == "alice"
    encoded = base64.b64encode(f"\0alice\0{password}".encode()).decode()
    for answer in answers:
        assert password not in answer.text
    assert password not in caplog.text
    assert encoded not in caplog.text
