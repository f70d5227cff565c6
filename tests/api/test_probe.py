"""POST /api/probe: probe, recommendation, login test and apply."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from postroom.api.app import create_app
from postroom.devserver.sink import SinkServer
from postroom.domain.db import transaction
from postroom.domain.tokens import create_token
from postroom.runtime import Runtime
from tests.peers.blackhole import black_hole
from tests.peers.certs import Certificates
from tests.peers.scripted import DROP, Raw, ScriptedServer

PASSWORD = "Api-Probe-Secret-3"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with transaction(runtime.sessions) as session:
        token = create_token(session, "tests")
    with TestClient(create_app(runtime)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def test_probe_reports_and_applies(
    client: TestClient,
    start_sink: Callable[..., SinkServer],
    certificates: Certificates,
) -> None:
    server = start_sink("starttls", users={"alice": PASSWORD})
    created = client.post(
        "/api/profiles",
        json={
            "name": "Orders",
            "host": "old.example.com",
            "port": 25,
            "security": "none",
            "from": "orders@example.com",
        },
    )
    assert created.status_code == 201

    with black_hole() as hole:
        answer = client.post(
            "/api/probe",
            json={
                "host": "localhost",
                "ports": [hole, server.port],
                "timeout": 1,
                "ca_bundle": str(certificates.ca_file),
                "login": "alice",
                "password": PASSWORD,
                "apply": "Orders",
            },
        )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    ports = {port["port"]: port for port in body["ports"]}
    assert ports[hole]["error_kind"] == "timeout"
    assert ports[server.port]["starttls_offered"] is True
    assert body["recommendation"]["port"] == server.port
    assert body["recommendation"]["security"] == "starttls"
    assert body["login"]["ok"] is True
    assert body["applied_to"] == "Orders"
    assert PASSWORD not in answer.text
    profile = client.get("/api/profiles/Orders").json()
    assert profile["port"] == server.port
    assert profile["security"] == "starttls"
    assert profile["host"] == "localhost"


def test_probe_sends_no_credentials_or_mail(
    client: TestClient, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(extensions=["AUTH PLAIN LOGIN", "SIZE 100"])

    answer = client.post(
        "/api/probe", json={"host": "127.0.0.1", "ports": [server.port]}
    )

    assert answer.status_code == 200
    assert answer.json()["login"] is None
    verbs = {command.split(" ")[0].upper() for command in server.commands}
    assert verbs == {"EHLO", "QUIT"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"host": "smtp.example.com", "ports": [0]}, "ports"),
        ({"host": "smtp.example.com", "login": "alice"}, "password"),
        ({"host": "smtp.example.com", "timeout": 0}, "timeout"),
        ({"host": "smtp.example.com/x"}, "host"),
    ],
)
def test_probe_invalid_input_is_422(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    answer = client.post("/api/probe", json=body)

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", field]


def test_probe_unknown_profile_is_404(client: TestClient) -> None:
    answer = client.post(
        "/api/probe", json={"host": "127.0.0.1", "ports": [1], "apply": "Nobody"}
    )

    assert answer.status_code == 404


BROKEN_TLS = Raw(
    b"220 2.0.0 Ready to start TLS\r\n\x16\x03\x01\x00\x10garbage-not-tls", then=DROP
)


def create_target(client: TestClient) -> None:
    created = client.post(
        "/api/profiles",
        json={
            "name": "Target",
            "host": "127.0.0.1",
            "port": 587,
            "security": "starttls",
            "from": "orders@example.com",
        },
    )
    assert created.status_code == 201, created.text


def test_probe_never_downgrades_failed_starttls(
    client: TestClient, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(
        extensions=["STARTTLS", "AUTH PLAIN LOGIN"], replies={"STARTTLS": BROKEN_TLS}
    )
    create_target(client)

    answer = client.post(
        "/api/probe",
        json={
            "host": "127.0.0.1",
            "ports": [server.port],
            "timeout": 4,
            "login": "alice",
            "password": PASSWORD,
            "apply": "Target",
        },
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    port = body["ports"][0]
    assert port["usable"] is False
    assert port["security"] is None
    assert port["error_kind"] == "tls"
    # The reset arrives with or without the kernel's message, depending on
    # when the server's close lands; either way the error names it.
    handshake_error = port["error"].partition("TLS handshake failed: ")[2]
    assert "reset" in handshake_error.lower()
    assert body["recommendation"] is None
    assert body["login"] is None
    assert body["applied_to"] is None
    assert "was not changed" in body["apply_error"]
    verbs = {command.split(" ")[0].upper() for command in server.commands}
    assert "AUTH" not in verbs
    profile = client.get("/api/profiles/Target").json()
    assert profile["security"] == "starttls"
    assert profile["port"] == 587


def test_probe_applies_plaintext_only_when_allowed(
    client: TestClient, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(extensions=["AUTH PLAIN LOGIN"], users={"alice": PASSWORD})
    create_target(client)
    request = {
        "host": "127.0.0.1",
        "ports": [server.port],
        "login": "alice",
        "password": PASSWORD,
        "apply": "Target",
    }

    refused = client.post("/api/probe", json=request)

    assert refused.status_code == 200, refused.text
    body = refused.json()
    assert body["recommendation"]["security"] == "none"
    assert body["login"]["tested"] is False
    assert body["login"]["diagnosis"]["id"] == "login-not-tested-without-tls"
    assert body["applied_to"] is None
    assert "allow_plaintext" in body["apply_error"]
    assert client.get("/api/profiles/Target").json()["security"] == "starttls"
    assert "AUTH" not in {command.split(" ")[0] for command in server.commands}

    allowed = client.post("/api/probe", json={**request, "allow_plaintext": True})

    assert allowed.status_code == 200, allowed.text
    body = allowed.json()
    assert body["login"]["tested"] is True
    assert body["login"]["ok"] is True
    assert body["applied_to"] == "Target"
    profile = client.get("/api/profiles/Target").json()
    assert profile["security"] == "none"
    assert profile["port"] == server.port
    assert PASSWORD not in allowed.text
