"""Templates over the HTTP API: CRUD, validation on save, previews."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from postroom.api.app import create_app
from postroom.domain.db import transaction
from postroom.domain.tokens import create_token
from postroom.runtime import Runtime
from tests.conftest import make_runtime
from tests.notifications import ORDER, shipped_template


def authorized(runtime: Runtime) -> Iterator[TestClient]:
    with transaction(runtime.sessions) as session:
        token = create_token(session, "tests")
    with TestClient(create_app(runtime)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    client = authorized(runtime)
    test_client = next(client)
    test_client.post(
        "/api/profiles",
        json={
            "name": "Shop",
            "host": "127.0.0.1",
            "port": 2525,
            "security": "none",
            "from": "Shop <orders@shop.example>",
        },
    )
    yield test_client
    next(client, None)


def test_template_crud(client: TestClient) -> None:
    created = client.post("/api/templates", json=shipped_template())

    assert created.status_code == 201
    assert created.headers["Location"] == "/api/templates/shipped"
    assert created.json()["variables"] == [
        "customer.email",
        "customer.name",
        "order.id",
        "order.items",
    ]
    changed = client.patch("/api/templates/shipped", json={"is_active": False})
    assert changed.status_code == 200
    assert changed.json()["is_active"] is False
    assert changed.json()["subject"] == "Order {{ order.id }} has shipped"
    listed = client.get("/api/templates", params={"event_type": "order.shipped"})
    assert [item["name"] for item in listed.json()] == ["shipped"]
    assert client.delete("/api/templates/shipped").status_code == 204
    assert client.get("/api/templates/shipped").status_code == 404


def test_name_taken_is_409(client: TestClient) -> None:
    client.post("/api/templates", json=shipped_template())

    answer = client.post("/api/templates", json=shipped_template())

    assert answer.status_code == 409
    assert answer.json()["detail"][0]["loc"] == ["body", "name"]


def test_compile_error_is_422_with_line(client: TestClient) -> None:
    answer = client.post(
        "/api/templates",
        json=shipped_template(text_body="Hello\n{{ customer.name }\n"),
    )

    assert answer.status_code == 422
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "text_body"]
    assert detail["msg"].startswith("text_body line 2: unexpected '}'")
    assert client.get("/api/templates").json() == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"to": "bob@example.com"}, "to"),
        ({"attachments": [{"source": "x", "surprise": 1}]}, "surprise"),
        ({"is_active": "sometimes"}, "is_active"),
        ({"headers": {"Subject": "x"}}, "headers.Subject"),
    ],
)
def test_invalid_template_is_422(
    client: TestClient, changes: dict[str, Any], field: str
) -> None:
    answer = client.post("/api/templates", json=shipped_template(**changes))

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == field


def test_preview_shows_message_and_queues_nothing(client: TestClient) -> None:
    client.post(
        "/api/templates",
        json=shipped_template(
            headers={"X-Order": "{{ order.id }}"},
            list_unsubscribe=["https://shop.example/u?o={{ order.id }}"],
            list_unsubscribe_post=True,
        ),
    )

    answer = client.post("/api/templates/shipped/preview", json={"raw": True})

    assert answer.status_code == 200
    preview = answer.json()
    message = preview["message"]
    headers = {item["name"]: item["value"] for item in message["headers"]}
    assert preview["profile"] == "Shop"
    assert preview["held_reason"] is None
    assert headers["Subject"] == "Order 42 has shipped"
    assert headers["X-Order"] == "42"
    assert headers["List-Unsubscribe"] == "<https://shop.example/u?o=42>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["envelope"]["recipients"] == [
        {"address": "juergen@example.com", "kind": "to"}
    ]
    assert [part["content_type"] for part in message["parts"]] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    assert message["parts"][1]["content"] == "Hello Jürgen Müller,\n\n- Teapot\n"
    parsed = email.message_from_string(message["raw"], policy=email.policy.default)
    assert parsed["Message-ID"] == message["message_id"]
    assert client.get("/api/messages").json() == []


def test_preview_with_other_data(client: TestClient) -> None:
    client.post("/api/templates", json=shipped_template())
    data = {**ORDER, "order": {"id": 7, "items": []}}

    answer = client.post("/api/templates/shipped/preview", json={"data": data})

    message = answer.json()["message"]
    assert message["subject"] == "Order 7 has shipped"


def test_preview_of_unsaved_template(client: TestClient) -> None:
    draft = shipped_template()
    del draft["name"]

    answer = client.post(
        "/api/templates/preview", json={"template": draft, "data": ORDER}
    )

    assert answer.status_code == 200
    assert answer.json()["message"]["subject"] == "Order 42 has shipped"
    assert client.get("/api/templates").json() == []


def test_preview_names_line_of_failure(client: TestClient) -> None:
    client.post(
        "/api/templates",
        json=shipped_template(text_body="Hi\n\n{{ order.total.amount }}"),
    )

    answer = client.post("/api/templates/shipped/preview", json={})

    assert answer.status_code == 422
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "text_body"]
    assert detail["msg"] == (
        "template 'shipped': text_body line 3: 'dict object' has no attribute 'total'"
    )


def test_preview_refuses_sandbox_escape(client: TestClient) -> None:
    client.post(
        "/api/templates",
        json=shipped_template(
            subject="{{ cycler.__init__.__globals__.os.popen('id').read() }}"
        ),
    )

    answer = client.post("/api/templates/shipped/preview", json={})

    assert answer.status_code == 422
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "subject"]
    assert "access to attribute '__init__' of 'type' object is unsafe" in detail["msg"]


def test_runaway_template_stopped_service_stays(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, None, render_timeout_seconds=0.5)
    client = authorized(runtime)
    test_client = next(client)
    draft = shipped_template(
        profile=None,
        from_address="orders@shop.example",
        text_body="{% for a in range(100000) %}{% for b in range(100000) %}"
        "{% endfor %}{% endfor %}",
    )

    answer = test_client.post("/api/templates/preview", json={"template": draft})

    assert answer.status_code == 422
    assert (
        "rendering took longer than 0.5 seconds and was stopped"
        in (answer.json()["detail"][0]["msg"])
    )
    assert test_client.get("/api/health").status_code == 200
    draft["text_body"] = "fine"
    again = test_client.post("/api/templates/preview", json={"template": draft})
    assert again.json()["message"]["parts"][1]["content"] == "fine\n"
    next(client, None)
    runtime.close()
