"""Hostile input over the API: line separators, lengths, ids, dates, paths.

Each case used to end in 500, or in a row that breaks later, on SQLite,
PostgreSQL or both. Each must now be 422 naming the field, with nothing
stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from postroom.api.app import create_app
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.models import OutboxMessage, Profile
from postroom.domain.notifications import Template
from postroom.domain.oauth_models import OAuthFlow, OAuthGrant
from postroom.domain.scheduling import Job
from postroom.domain.tokens import create_token
from postroom.runtime import Runtime
from tests.notifications import shipped_template
from tests.peers.oauth_server import OAuthServer

LINE_BREAKS = ["\x85", "\u2028", "\u2029", "\x0b", "\x0c"]
# A path component longer than any file system allows (NAME_MAX is 255
# bytes on Linux file systems), so looking it up fails with ENAMETOOLONG.
UNREADABLE_PATH = "/tmp/" + "a" * 900


@pytest.fixture
def api(any_runtime: Runtime) -> Iterator[TestClient]:
    with transaction(any_runtime.sessions) as session:
        token = create_token(session, "tests")
    with TestClient(create_app(any_runtime)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        created = client.post("/api/profiles", json=profile_body(name="Shop"))
        assert created.status_code == 201, created.text
        yield client


def profile_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Orders",
        "host": "127.0.0.1",
        "port": 2525,
        "security": "none",
        "from": "Orders <orders@example.com>",
    }
    body.update(changes)
    return body


def job_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Daily",
        "cron": "0 7 * * *",
        "report": {"kind": "schedule-list"},
        "to": ["ops@example.com"],
        "profile": "Shop",
    }
    body.update(changes)
    return body


def message_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "profile": "Shop",
        "to": ["bob@example.com"],
        "subject": "hi",
        "text": "x",
    }
    body.update(changes)
    return body


def count(runtime: Runtime, model: type[Any]) -> int:
    with transaction(runtime.sessions) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def only_error(answer: Any) -> dict[str, Any]:
    detail = answer.json()["detail"]
    assert isinstance(detail, list)
    assert len(detail) == 1
    error: dict[str, Any] = detail[0]
    return error


@pytest.mark.parametrize("char", LINE_BREAKS, ids=repr)
@pytest.mark.parametrize(
    ("path", "make_body", "field"),
    [
        ("/api/profiles", lambda c: profile_body(name=f"a{c}b"), "name"),
        ("/api/profiles", lambda c: profile_body(client=f"a{c}b"), "client"),
        ("/api/profiles", lambda c: profile_body(login=f"a{c}b"), "login"),
        ("/api/messages", lambda c: message_body(subject=f"a{c}b"), "subject"),
        (
            "/api/messages",
            lambda c: message_body(headers={"X-A": f"a{c}b"}),
            "headers.X-A",
        ),
        ("/api/jobs", lambda c: job_body(name=f"line{c}sep"), "name"),
        ("/api/jobs", lambda c: job_body(client=f"a{c}b"), "client"),
        ("/api/templates", lambda c: shipped_template(name=f"a{c}b"), "name"),
        (
            "/api/templates",
            lambda c: shipped_template(subject=f"Order{c}shipped"),
            "subject",
        ),
        (
            "/api/events",
            lambda c: {"type": "order.shipped", "client": f"a{c}b"},
            "client",
        ),
    ],
)
def test_line_separators_rejected(
    api: TestClient,
    any_runtime: Runtime,
    path: str,
    make_body: Any,
    field: str,
    char: str,
) -> None:
    before = {model: count(any_runtime, model) for model in (Profile, Job, Template)}

    answer = api.post(path, json=make_body(char))

    assert answer.status_code == 422, answer.text
    error = only_error(answer)
    assert error["loc"] == ["body", field]
    assert "line separators" in error["msg"] or "control characters" in error["msg"]
    after = {model: count(any_runtime, model) for model in (Profile, Job, Template)}
    assert after == before
    assert count(any_runtime, OutboxMessage) == 0


LONG_CASES = [
    ("/api/profiles", profile_body(client="c" * 201), "client", 200),
    ("/api/profiles", profile_body(login="l" * 321), "login", 320),
    ("/api/profiles", profile_body(name="n" * 201), "name", 200),
    ("/api/profiles", profile_body(ehlo_name="e" * 256), "ehlo_name", 255),
    ("/api/profiles", profile_body(host="h" * 256), "host", 255),
    ("/api/profiles", profile_body(ca_bundle="/" + "d/" * 500), "ca_bundle", 1000),
    (
        "/api/profiles",
        profile_body(**{"from": "D" * 600 + " <a@example.com>"}),
        "from_address",
        500,
    ),
    (
        "/api/profiles",
        profile_body(mechanism="Kerberos", kerberos_keytab="/" + "k/" * 500),
        "kerberos_keytab",
        1000,
    ),
    (
        "/api/profiles",
        profile_body(kerberos_config="/" + "k/" * 500),
        "kerberos_config",
        1000,
    ),
    (
        "/api/profiles",
        profile_body(kerberos_service_principal="smtp/" + "h" * 500),
        "kerberos_service_principal",
        500,
    ),
    (
        "/api/profiles",
        profile_body(
            oauth_authorization_endpoint="https://login.example.com/" + "p" * 1000
        ),
        "oauth_authorization_endpoint",
        1000,
    ),
    ("/api/jobs", job_body(client="c" * 300), "client", 200),
    ("/api/jobs", job_body(name="j" * 201), "name", 200),
    (
        "/api/jobs",
        job_body(cron="0 7 * * " + ",".join(["1"] * 150)),
        "cron",
        200,
    ),
    ("/api/events", {"type": "order.shipped", "client": "c" * 201}, "client", 200),
    ("/api/events", {"type": "o" * 201}, "type", 200),
    (
        "/api/events",
        {"type": "order.shipped", "idempotency_key": "k" * 256},
        "idempotency_key",
        255,
    ),
    ("/api/templates", shipped_template(name="t" * 201), "name", 200),
    ("/api/templates", shipped_template(client="c" * 201), "client", 200),
    ("/api/templates", shipped_template(profile="p" * 201), "profile", 200),
    (
        "/api/templates",
        shipped_template(**{"from": "D" * 600 + " <a@example.com>"}),
        "from_address",
        500,
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "field", "limit"),
    LONG_CASES,
    ids=[f"{path.rsplit('/', 1)[1]}-{field}" for path, _, field, _ in LONG_CASES],
)
def test_values_longer_than_column_rejected(
    api: TestClient,
    any_runtime: Runtime,
    path: str,
    body: dict[str, Any],
    field: str,
    limit: int,
) -> None:
    before = {model: count(any_runtime, model) for model in (Profile, Job, Template)}

    answer = api.post(path, json=body)

    assert answer.status_code == 422, answer.text
    error = only_error(answer)
    assert error["loc"] == ["body", field]
    assert f"{limit} characters" in error["msg"]
    after = {model: count(any_runtime, model) for model in (Profile, Job, Template)}
    assert after == before


def test_overlong_value_in_patch_rejected(
    api: TestClient, any_runtime: Runtime
) -> None:
    answer = api.patch("/api/profiles/Shop", json={"client": "c" * 201})

    assert answer.status_code == 422, answer.text
    assert only_error(answer)["loc"] == ["body", "client"]
    with transaction(any_runtime.sessions) as session:
        assert profiles.get_profile(session, "Shop").client is None


def test_database_rejection_is_422_not_500(
    api: TestClient,
    any_runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Stand-in for a validation gap: the length check lets everything pass,
    # so PostgreSQL itself rejects the value. SQLite stores any length, so
    # there the request succeeds.
    monkeypatch.setattr(
        "postroom.domain.profiles.check_length", lambda value, *_args: value
    )
    secretive = "S3cret-looking-client-" + "c" * 300

    with caplog.at_level(logging.ERROR, logger="postroom.api"):
        answer = api.post("/api/profiles", json=profile_body(client=secretive))

    if any_runtime.engine.dialect.name == "sqlite":
        assert answer.status_code == 201
        return
    assert answer.status_code == 422, answer.text
    error = only_error(answer)
    assert error["loc"] == ["body"]
    assert "value too long" in error["msg"]
    assert "Nothing was stored" in error["msg"]
    assert secretive not in answer.text
    with transaction(any_runtime.sessions) as session:
        assert profiles.find_profile(session, "Orders") is None
    logged = [r for r in caplog.records if r.getMessage().startswith("the database")]
    assert len(logged) == 1
    assert getattr(logged[0], "path", None) == "/api/profiles"
    assert secretive not in caplog.text


def test_unique_violation_is_409_not_500(
    api: TestClient, any_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand-in for two requests racing past the name check: the unique
    # index is then what rejects the second row, on both databases.
    monkeypatch.setattr(
        "postroom.domain.profiles._ensure_name_free", lambda *_args: None
    )

    answer = api.post("/api/profiles", json=profile_body(name="Shop"))

    assert answer.status_code == 409, answer.text
    error = only_error(answer)
    assert error["type"] == "conflict"
    assert "Nothing was stored" in error["msg"]
    with transaction(any_runtime.sessions) as session:
        assert len(profiles.list_profiles(session)) == 3


BAD_IDS = ["0", "-1", "2147483648", "9999999999", "99999999999999999999999"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize(
    "path",
    ["/api/messages/{}", "/api/events/{}", "/api/jobs/Daily/runs/{}"],
)
def test_ids_out_of_range_are_422(api: TestClient, path: str, bad_id: str) -> None:
    assert api.post("/api/jobs", json=job_body()).status_code == 201

    answer = api.get(path.format(bad_id))

    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["path", "id"]


@pytest.mark.parametrize("path", ["/api/messages/{}", "/api/events/{}"])
def test_largest_id_is_not_found(api: TestClient, path: str) -> None:
    answer = api.get(path.format(2**31 - 1))

    assert answer.status_code == 404
    assert only_error(answer)["loc"] == ["path", "id"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize(
    "path", ["/api/messages", "/api/events", "/api/jobs/Daily/runs"]
)
def test_before_id_out_of_range_is_422(api: TestClient, path: str, bad_id: str) -> None:
    assert api.post("/api/jobs", json=job_body()).status_code == 201

    answer = api.get(path, params={"before_id": bad_id})

    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["query", "before_id"]


@pytest.mark.parametrize(
    "since", ["99999999h", "99999999999w", "9" * 5000 + "d", "0001-01-01T00:00+05:00"]
)
def test_history_since_out_of_range_is_422(api: TestClient, since: str) -> None:
    answer = api.get("/api/reports/schedule-history", params={"since": since})

    assert answer.status_code == 422, answer.text
    error = only_error(answer)
    assert error["loc"] == ["query", "since"]
    assert "year" in error["msg"]


def test_history_until_out_of_range_is_422(api: TestClient) -> None:
    answer = api.get(
        "/api/reports/schedule-history",
        params={"since": "24h", "until": "9999-12-31T23:00-05:00"},
    )

    assert answer.status_code == 422, answer.text
    assert only_error(answer)["loc"] == ["query", "until"]


@pytest.mark.parametrize(
    ("cron", "after"),
    [
        ("0 7 * * *", "9999-12-31T23:00:00Z"),
        # The next 29 February after 9998 is in 10000.
        ("0 7 29 2 *", "9998-03-01T00:00:00Z"),
        ("0 7 * * *", "0001-01-01T00:00:00+05:00"),
    ],
)
def test_schedule_preview_after_out_of_range_is_422(
    api: TestClient, cron: str, after: str
) -> None:
    answer = api.post(
        "/api/schedules/next",
        json={"cron": cron, "after": after, "time_zone": "America/Chicago"},
    )

    assert answer.status_code == 422, answer.text
    error = only_error(answer)
    assert error["loc"] == ["body", "after"]
    assert "9999" in error["msg"]


def test_job_next_after_out_of_range(api: TestClient) -> None:
    assert api.post("/api/jobs", json=job_body()).status_code == 201

    answer = api.get("/api/jobs/Daily/next", params={"after": "9999-12-31T23:00:00Z"})

    assert answer.status_code == 422, answer.text
    assert only_error(answer)["loc"] == ["query", "after"]


def test_run_at_beyond_year_9999_is_422(api: TestClient, any_runtime: Runtime) -> None:
    body = job_body(cron=None, run_at="9999-12-31T23:59", time_zone="America/Chicago")

    answer = api.post("/api/jobs", json=body)

    assert answer.status_code == 422, answer.text
    error = only_error(answer)
    assert error["loc"] == ["body", "run_at"]
    assert "America/Chicago" in error["msg"]
    assert count(any_runtime, Job) == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ca_bundle": UNREADABLE_PATH}, "ca_bundle"),
        (
            {"mechanism": "Kerberos", "kerberos_keytab": UNREADABLE_PATH},
            "kerberos_keytab",
        ),
        ({"kerberos_config": UNREADABLE_PATH}, "kerberos_config"),
    ],
)
def test_unreadable_profile_paths_are_422(
    api: TestClient, any_runtime: Runtime, changes: dict[str, Any], field: str
) -> None:
    answer = api.post("/api/profiles", json=profile_body(**changes))

    assert answer.status_code == 422, answer.text
    error = only_error(answer)
    assert error["loc"] == ["body", field]
    assert "File name too long" in error["msg"]
    with transaction(any_runtime.sessions) as session:
        assert profiles.find_profile(session, "Orders") is None


def test_unreadable_probe_ca_bundle_is_422(api: TestClient) -> None:
    # Checked before any connection, so port 1 is never dialled.
    body = {"host": "127.0.0.1", "ports": [1], "ca_bundle": "/tmp/" + "a" * 5000}

    answer = api.post("/api/probe", json=body)

    assert answer.status_code == 422, answer.text
    assert only_error(answer)["loc"] == ["body", "ca_bundle"]


@pytest.mark.parametrize(
    ("path", "body", "name"),
    [
        ("/api/profiles", profile_body(name="Ωmega"), "Ωmega"),
        ("/api/profiles", profile_body(name="Café 100% ?#&"), "Café 100% ?#&"),
        ("/api/jobs", job_body(name="Ωmega täglich"), "Ωmega täglich"),
        ("/api/templates", shipped_template(name="Ωmega?x=1#y"), "Ωmega?x=1#y"),
    ],
)
def test_location_is_percent_encoded(
    api: TestClient, path: str, body: dict[str, Any], name: str
) -> None:
    answer = api.post(path, json=body)

    assert answer.status_code == 201, answer.text
    location = answer.headers["Location"]
    assert location == f"{path}/{quote(name, safe='')}"
    assert location.isascii()
    shown = api.get(location)
    assert shown.status_code == 200
    assert shown.json()["name"] == name


@pytest.fixture
def oauth_provider() -> Iterator[OAuthServer]:
    server = OAuthServer(clients={"app": "app-Secret-51"}).start()
    yield server
    server.stop()


def xoauth2_profile(oauth_provider: OAuthServer) -> dict[str, Any]:
    return profile_body(
        name="Cloud",
        security="starttls",
        mechanism="XOAUTH2",
        login="orders@example.com",
        oauth_client_id="app",
        oauth_client_secret="app-Secret-51",
        oauth_token_endpoint=oauth_provider.token_endpoint,
        oauth_authorization_endpoint=oauth_provider.authorization_endpoint,
        oauth_refresh_token="refresh-Token-88",
    )


def test_overlong_oauth_error_code_is_stored_cut(
    api: TestClient, any_runtime: Runtime, oauth_provider: OAuthServer
) -> None:
    created = api.post("/api/profiles", json=xoauth2_profile(oauth_provider))
    assert created.status_code == 201, created.text
    oauth_provider.refresh_error = {"error": "e" * 300, "error_description": "no"}

    answer = api.post("/api/profiles/Cloud/oauth/refresh")

    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is False
    with transaction(any_runtime.sessions) as session:
        profile = profiles.get_profile(session, "Cloud")
        grant = session.get(OAuthGrant, profile.id)
        assert grant is not None
        assert grant.failure_error == "e" * 200


def test_overlong_redirect_uri_is_422(
    api: TestClient, any_runtime: Runtime, oauth_provider: OAuthServer
) -> None:
    created = api.post("/api/profiles", json=xoauth2_profile(oauth_provider))
    assert created.status_code == 201, created.text
    # Without public_url the redirect URI is built from the Host header.
    host = "h" * 990 + ".example"

    answer = api.post("/api/profiles/Cloud/oauth/connect", headers={"Host": host})

    assert answer.status_code == 422, answer.text
    error = only_error(answer)
    assert error["loc"] == ["body", "public_url"]
    assert "public_url" in error["msg"]
    assert count(any_runtime, OAuthFlow) == 0
