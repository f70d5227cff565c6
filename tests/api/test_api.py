"""The HTTP API: auth, profiles, messages, test email, error shapes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from postroom.api.app import create_app
from postroom.devserver.sink import SinkServer
from postroom.domain.db import transaction
from postroom.domain.tokens import create_token
from postroom.outbox.worker import Worker
from postroom.runtime import Runtime

PASSWORD = "Sup3r-Secret-Pw"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with transaction(runtime.sessions) as session:
        token = create_token(session, "tests")
    with TestClient(create_app(runtime)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def profile_body(server_port: int, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Orders",
        "host": "127.0.0.1",
        "port": server_port,
        "security": "none",
        "login": "alice",
        "password": PASSWORD,
        "confirm_password": PASSWORD,
        "from": "Orders <orders@example.com>",
        "connect_timeout": 2,
        "command_timeout": 2,
    }
    body.update(changes)
    return body


def test_requests_without_token_are_refused(runtime: Runtime) -> None:
    with TestClient(create_app(runtime)) as anonymous:
        assert anonymous.get("/api/profiles").status_code == 401
        bad = anonymous.get("/api/profiles", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        assert anonymous.get("/api/health").status_code == 200


def test_profile_crud(client: TestClient) -> None:
    created = client.post("/api/profiles", json=profile_body(2525))
    assert created.status_code == 201
    assert created.headers["Location"] == "/api/profiles/Orders"
    assert created.json()["has_password"] is True
    assert created.json()["from_address"] == "Orders <orders@example.com>"

    changed = client.patch("/api/profiles/Orders", json={"port": 2526})
    assert changed.status_code == 200
    assert changed.json()["port"] == 2526
    assert changed.json()["has_password"] is True

    names = [profile["name"] for profile in client.get("/api/profiles").json()]
    assert names == ["DefaultDeliveryProfile", "DefaultNotificationProfile", "Orders"]

    assert client.delete("/api/profiles/Orders").status_code == 204
    assert client.get("/api/profiles/Orders").status_code == 404


def test_password_never_in_answers(client: TestClient) -> None:
    answers = [
        client.post("/api/profiles", json=profile_body(2525)),
        client.get("/api/profiles/Orders"),
        client.get("/api/profiles"),
        client.patch(
            "/api/profiles/Orders", json={"password": PASSWORD, "confirm_password": "x"}
        ),
    ]
    for answer in answers:
        assert PASSWORD not in answer.text


@pytest.mark.parametrize(
    ("changes", "field", "status"),
    [
        ({"port": 70000}, "port", 422),
        ({"security": "ssl"}, "security", 422),
        ({"mechanism": "Magic"}, "mechanism", 422),
        ({"from": "nope"}, "from_address", 422),
        ({"confirm_password": "other"}, "confirm_password", 422),
        ({"host": ""}, "host", 422),
        ({"name": "x\r\ny"}, "name", 422),
        ({"port": "many"}, "port", 422),
        ({"surprise": 1}, "surprise", 422),
    ],
)
def test_invalid_profile_is_422_with_field(
    client: TestClient, changes: dict[str, Any], field: str, status: int
) -> None:
    answer = client.post("/api/profiles", json=profile_body(2525, **changes))

    assert answer.status_code == status
    locations = [error["loc"][-1] for error in answer.json()["detail"]]
    assert field in locations
    assert client.get("/api/profiles/Orders").status_code == 404


def test_name_taken_is_409(client: TestClient) -> None:
    client.post("/api/profiles", json=profile_body(2525))

    answer = client.post("/api/profiles", json=profile_body(2525))

    assert answer.status_code == 409
    assert answer.json()["detail"][0]["loc"] == ["body", "name"]


@pytest.mark.parametrize(
    "body",
    [None, [], "text", {"name": None}, {"name": 5, "host": ["a"]}, {"port": {"a": 1}}],
)
def test_malformed_bodies_never_500(client: TestClient, body: Any) -> None:
    answer = client.post("/api/profiles", json=body)

    assert answer.status_code == 422


def test_system_profile_delete_is_409(client: TestClient) -> None:
    answer = client.delete("/api/profiles/DefaultDeliveryProfile")

    assert answer.status_code == 409


def test_queue_message_and_read_reply(
    client: TestClient, runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink(users={"alice": PASSWORD})
    client.post("/api/profiles", json=profile_body(server.port))

    queued = client.post(
        "/api/messages",
        json={
            "profile": "Orders",
            "to": ["bob@example.com"],
            "subject": "Hi",
            "text": "Body",
        },
    )
    assert queued.status_code == 202
    message_pk = queued.json()["id"]
    assert client.get(f"/api/messages/{message_pk}").json()["status"] == "queued"

    asyncio.run(Worker(runtime).drain())

    shown = client.get(f"/api/messages/{message_pk}").json()
    assert shown["status"] == "sent"
    assert shown["recipients"][0]["reply_code"] == 250
    assert shown["recipients"][0]["reply_text"].startswith("2.0.0 OK queued as")
    assert server.handler.messages[0].login == "alice"
    listed = client.get("/api/messages", params={"status": "sent"}).json()
    assert [message["id"] for message in listed] == [message_pk]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"profile": "Missing", "to": ["a@example.com"], "text": "x"}, "profile"),
        ({"profile": "Orders", "to": [], "text": "x"}, "to"),
        ({"profile": "Orders", "to": ["not-an-address"], "text": "x"}, "to[0]"),
        ({"profile": "Orders", "to": ["a@example.com"]}, "text"),
        (
            {
                "profile": "Orders",
                "to": ["a@example.com"],
                "text": "x",
                "subject": "a\nBcc: x@y",
            },
            "subject",
        ),
        (
            {
                "profile": "Orders",
                "to": ["a@example.com"],
                "text": "x",
                "headers": {"Bcc": "x@y"},
            },
            "headers.Bcc",
        ),
    ],
)
def test_invalid_message_is_422(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    client.post("/api/profiles", json=profile_body(2525))

    answer = client.post("/api/messages", json=body)

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == field
    assert client.get("/api/messages").json() == []


def test_missing_message_is_404(client: TestClient) -> None:
    assert client.get("/api/messages/999").status_code == 404


def test_test_email_endpoint(
    client: TestClient, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink(users={"alice": PASSWORD})
    client.post("/api/profiles", json=profile_body(server.port))

    answer = client.post("/api/profiles/Orders/test", json={"to": "bob@example.com"})

    assert answer.status_code == 200
    result = answer.json()
    assert result["ok"] is True
    assert result["reply_code"] == 250
    assert any("AUTH PLAIN [AUTH data hidden]" in line for line in result["transcript"])
    assert PASSWORD not in answer.text


def test_test_email_failure_is_explained(client: TestClient) -> None:
    client.post("/api/profiles", json=profile_body(1, host="127.0.0.1"))

    result = client.post(
        "/api/profiles/Orders/test", json={"to": "bob@example.com"}
    ).json()

    assert result["ok"] is False
    assert result["step"] == "connect"
    assert result["diagnosis"] == "connection-refused"
    assert result["fix"]


def test_openapi_lists_the_paths(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    for path in (
        "/api/profiles",
        "/api/profiles/{name}",
        "/api/profiles/{name}/test",
        "/api/messages",
        "/api/messages/{id}",
    ):
        assert path in paths


def test_profile_created_from_preset(client: TestClient) -> None:
    body = {
        "name": "Mailing",
        "preset": "ses-eu-west-1",
        "from": "orders@example.com",
        "login": "AKIAEXAMPLE",
    }

    created = client.post("/api/profiles", json=body)

    assert created.status_code == 201, created.text
    assert created.json()["host"] == "email-smtp.eu-west-1.amazonaws.com"
    assert created.json()["port"] == 587
    assert created.json()["security"] == "starttls"
    assert created.json()["login"] == "AKIAEXAMPLE"


def test_unknown_preset_is_422(client: TestClient) -> None:
    answer = client.post("/api/profiles", json={"name": "X", "preset": "nope"})

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "preset"]
    assert client.get("/api/profiles/X").status_code == 404


def test_presets_endpoints(client: TestClient) -> None:
    listed = client.get("/api/presets")
    one = client.get("/api/presets/zoho-eu")

    assert listed.status_code == 200
    assert "office365" in [row["name"] for row in listed.json()]
    assert one.status_code == 200
    assert one.json()["host"] == "smtp.zoho.eu"
    assert one.json()["region"] == "eu"
    assert one.json()["security"] == "starttls"
    assert client.get("/api/presets/ses").status_code == 422


def test_message_with_attachment_arrives(
    client: TestClient, runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    import base64
    import email
    import email.policy

    server = start_sink(users={"alice": PASSWORD})
    client.post("/api/profiles", json=profile_body(server.port))
    pdf = b"%PDF-1.4 invoice 42 \x00\xff"

    queued = client.post(
        "/api/messages",
        json={
            "profile": "Orders",
            "to": ["bob@example.com"],
            "subject": "Invoice 42",
            "text": "Attached.",
            "attachments": [
                {
                    "filename": "Rechnung Nr. 42.pdf",
                    "content_type": "application/pdf",
                    "content_base64": base64.b64encode(pdf).decode(),
                }
            ],
        },
    )
    asyncio.run(Worker(runtime).drain())

    assert queued.status_code == 202
    parsed = email.message_from_bytes(
        server.handler.messages[0].content, policy=email.policy.default
    )
    (attachment,) = list(parsed.iter_attachments())
    assert attachment.get_filename() == "Rechnung Nr. 42.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == pdf


@pytest.mark.parametrize(
    ("attachment", "field"),
    [
        (
            {"filename": "a.pdf", "content_base64": "not base64!"},
            "attachments[0].content_base64",
        ),
        ({"filename": "", "content_base64": "AAAA"}, "attachments[0].filename"),
        ({"filename": "a\nb", "content_base64": "AAAA"}, "attachments[0].filename"),
        (
            {"filename": "a", "content_type": "pdf", "content_base64": "AAAA"},
            "attachments[0].content_type",
        ),
    ],
)
def test_invalid_attachment_is_422(
    client: TestClient, attachment: dict[str, str], field: str
) -> None:
    client.post("/api/profiles", json=profile_body(2525))

    answer = client.post(
        "/api/messages",
        json={
            "profile": "Orders",
            "to": ["a@example.com"],
            "text": "x",
            "attachments": [attachment],
        },
    )

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == field
    assert client.get("/api/messages").json() == []
