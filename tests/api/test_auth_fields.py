"""Profile fields of Kerberos, XOAUTH2 and client certificates over the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def body(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "Orders",
        "host": "mail.example.com",
        "port": 587,
        "security": "starttls",
        "login": "orders@example.com",
        "from": "Orders <orders@example.com>",
    }
    values.update(changes)
    return values


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kerberos_service_principal": "smtp mail"}, "kerberos_service_principal"),
        ({"kerberos_keytab": "/nonexistent/smtp.keytab"}, "kerberos_keytab"),
        ({"kerberos_config": "/nonexistent/krb5.conf"}, "kerberos_config"),
        ({"mechanism": "XOAUTH2"}, "oauth_client_id"),
        (
            {
                "mechanism": "XOAUTH2",
                "oauth_client_id": "app",
                "oauth_provider": "custom",
            },
            "oauth_token_endpoint",
        ),
        ({"oauth_token_endpoint": "ftp://example.com/token"}, "oauth_token_endpoint"),
        ({"oauth_provider": "yahoo"}, "oauth_provider"),
        ({"client_certificate": "nope", "client_key": "nope"}, "client_certificate"),
    ],
)
def test_invalid_auth_field_is_422_and_stores_nothing(
    client: TestClient, changes: dict[str, Any], field: str
) -> None:
    answer = client.post("/api/profiles", json=body(**changes))

    assert answer.status_code == 422
    locations = [error["loc"][-1] for error in answer.json()["detail"]]
    assert field in locations
    assert client.get("/api/profiles/Orders").status_code == 404


def test_kerberos_fields_round_trip(client: TestClient, tmp_path: Path) -> None:
    keytab = tmp_path / "relay.keytab"
    keytab.write_bytes(b"\x05\x02")

    created = client.post(
        "/api/profiles",
        json=body(
            mechanism="Kerberos",
            kerberos_service_principal="smtp/mail.example.com@EXAMPLE.COM",
            kerberos_keytab=str(keytab),
        ),
    )

    assert created.status_code == 201, created.text
    shown = client.get("/api/profiles/Orders").json()
    assert shown["kerberos_service_principal"] == "smtp/mail.example.com@EXAMPLE.COM"
    assert shown["kerberos_keytab"] == str(keytab)
    assert shown["oauth"] is None
    cleared = client.patch("/api/profiles/Orders", json={"kerberos_keytab": ""})
    assert cleared.json()["kerberos_keytab"] is None


def test_provider_preset_fills_endpoint_and_scope(client: TestClient) -> None:
    created = client.post(
        "/api/profiles",
        json=body(mechanism="XOAUTH2", oauth_provider="google", oauth_client_id="app"),
    )

    assert created.status_code == 201, created.text
    oauth = client.get("/api/profiles/Orders/oauth").json()
    assert oauth["token_endpoint"] == "https://oauth2.googleapis.com/token"
    assert oauth["scope"] == "https://mail.google.com/"
    assert oauth["status"]["has_refresh_token"] is False
    assert created.json()["warnings"] == [
        "OAuth is not connected yet: connect the account "
        "(postroom profile oauth connect Orders)"
    ]
