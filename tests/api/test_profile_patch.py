"""PATCH of a profile: null clears an optional field, omitted fields stay."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from postroom.api.app import create_app
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.tokens import create_token
from postroom.runtime import Runtime
from tests.peers.certs import Certificates

PASSWORD = "Patch-Secret-Pw-93"


@pytest.fixture
def api(any_runtime: Runtime, certificates: Certificates) -> Iterator[TestClient]:
    with transaction(any_runtime.sessions) as session:
        token = create_token(session, "tests")
    with TestClient(create_app(any_runtime)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        created = client.post(
            "/api/profiles",
            json={
                "name": "Orders",
                "client": "Acme",
                "host": "127.0.0.1",
                "port": 2525,
                "security": "starttls",
                "inbound_host": "127.0.0.1",
                "inbound_port": 993,
                "login": "alice",
                "password": PASSWORD,
                "confirm_password": PASSWORD,
                "from": "Orders <orders@example.com>",
                "ehlo_name": "client.example.com",
                "ca_bundle": str(certificates.ca_file),
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["has_password"] is True
        yield client


def stored(runtime: Runtime) -> dict[str, Any]:
    with transaction(runtime.sessions) as session:
        profile = profiles.get_profile(session, "Orders")
        return {
            "client": profile.client,
            "inbound_host": profile.inbound_host,
            "inbound_port": profile.inbound_port,
            "login": profile.login,
            "has_password": profile.password_encrypted is not None,
            "ehlo_name": profile.ehlo_name,
            "ca_bundle": profile.ca_bundle,
            "port": profile.port,
        }


@pytest.mark.parametrize("field", ["client", "ehlo_name", "ca_bundle"])
def test_null_clears_optional_field(
    api: TestClient, any_runtime: Runtime, field: str
) -> None:
    before = stored(any_runtime)

    answer = api.patch("/api/profiles/Orders", json={field: None})

    assert answer.status_code == 200, answer.text
    assert answer.json()[field] is None
    after = stored(any_runtime)
    assert after[field] is None
    assert {k: v for k, v in after.items() if k != field} == {
        k: v for k, v in before.items() if k != field
    }


def test_omitted_field_is_unchanged(api: TestClient, any_runtime: Runtime) -> None:
    before = stored(any_runtime)

    answer = api.patch("/api/profiles/Orders", json={"port": 2526})

    assert answer.status_code == 200, answer.text
    assert stored(any_runtime) == before | {"port": 2526}


def test_null_clears_inbound_server_pair(api: TestClient, any_runtime: Runtime) -> None:
    answer = api.patch(
        "/api/profiles/Orders", json={"inbound_host": None, "inbound_port": None}
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["inbound_host"] is None
    assert answer.json()["inbound_port"] is None
    assert stored(any_runtime)["inbound_host"] is None


def test_null_inbound_host_alone_is_rejected(
    api: TestClient, any_runtime: Runtime
) -> None:
    answer = api.patch("/api/profiles/Orders", json={"inbound_host": None})

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "inbound_host"]
    assert stored(any_runtime)["inbound_host"] == "127.0.0.1"


def test_null_login_removes_password(api: TestClient, any_runtime: Runtime) -> None:
    answer = api.patch("/api/profiles/Orders", json={"login": None})

    assert answer.status_code == 200, answer.text
    assert answer.json()["login"] is None
    assert answer.json()["has_password"] is False
    assert stored(any_runtime)["has_password"] is False
    assert PASSWORD not in answer.text


def test_new_password_with_null_login_is_rejected(
    api: TestClient, any_runtime: Runtime
) -> None:
    answer = api.patch(
        "/api/profiles/Orders",
        json={"login": None, "password": "other", "confirm_password": "other"},
    )

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "password"]
    assert stored(any_runtime)["login"] == "alice"
    assert stored(any_runtime)["has_password"] is True


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"password": ""},
        {"password": None},
        {"password": "", "confirm_password": ""},
    ],
)
def test_omitted_or_empty_password_keeps_stored(
    api: TestClient, any_runtime: Runtime, body: dict[str, Any]
) -> None:
    answer = api.patch("/api/profiles/Orders", json=body)

    assert answer.status_code == 200, answer.text
    assert answer.json()["has_password"] is True
    assert stored(any_runtime)["has_password"] is True


@pytest.mark.parametrize(
    "field",
    ["name", "port", "security", "mechanism", "is_active", "connect_timeout"],
)
def test_null_for_required_field_is_rejected(
    api: TestClient, any_runtime: Runtime, field: str
) -> None:
    before = stored(any_runtime)

    answer = api.patch("/api/profiles/Orders", json={field: None})

    assert answer.status_code == 422, answer.text
    error = answer.json()["detail"][0]
    assert error["loc"] == ["body", field]
    assert "cannot be null" in error["msg"]
    assert stored(any_runtime) == before


def test_null_host_is_rejected_on_active_profile(
    api: TestClient, any_runtime: Runtime
) -> None:
    answer = api.patch("/api/profiles/Orders", json={"host": None})

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "host"]
