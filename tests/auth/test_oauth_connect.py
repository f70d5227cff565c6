"""The OAuth connect flow: PKCE authorization code, redirect back to Postroom."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from postroom.api.app import create_app
from postroom.domain.db import transaction
from postroom.domain.tokens import create_token
from postroom.oauth.flow import pkce_challenge
from postroom.runtime import Runtime
from tests.auth.conftest import CLIENT_ID, CLIENT_SECRET
from tests.auth.helpers import add_profile, test_email
from tests.peers.auth_smtp import AuthServer
from tests.peers.oauth_server import OAuthServer

MAILBOX = "orders@example.com"


def xoauth2_profile(
    runtime: Runtime,
    provider: OAuthServer,
    server: AuthServer,
    preset: str = "microsoft",
) -> None:
    add_profile(
        runtime,
        server.port,
        mechanism="XOAUTH2",
        login=MAILBOX,
        oauth_provider=preset,
        oauth_client_id=CLIENT_ID,
        oauth_client_secret=CLIENT_SECRET,
        oauth_token_endpoint=provider.token_endpoint,
        oauth_authorization_endpoint=provider.authorization_endpoint,
    )


def api_token(runtime: Runtime) -> str:
    with transaction(runtime.sessions) as session:
        return create_token(session, "tests")


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    token = api_token(runtime)
    with TestClient(create_app(runtime)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def provider_redirect(authorization_url: str, decision: str = "accept") -> str:
    """Sign in at the test provider as a browser would; return the redirect."""
    page = httpx.get(authorization_url)
    assert page.status_code == 200
    link = re.search(rf'id="{decision}" href="([^"]+)"', page.text)
    assert link is not None
    base = authorization_url.split("/authorize")[0]
    answer = httpx.get(base + link.group(1).replace("&amp;", "&"))
    assert answer.status_code == 302
    return answer.headers["Location"]


def local_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_connect_flow_stores_first_refresh_token(
    runtime: Runtime,
    client: TestClient,
    oauth_provider: OAuthServer,
    xoauth2_server: AuthServer,
) -> None:
    xoauth2_profile(runtime, oauth_provider, xoauth2_server)
    assert test_email(runtime).diagnosis == "oauth-not-connected"

    started = client.post("/api/profiles/Orders/oauth/connect")
    assert started.status_code == 200
    answer = started.json()
    assert answer["redirect_uri"] == "http://testserver/oauth/callback"
    query = parse_qs(urlsplit(answer["authorization_url"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["login_hint"] == [MAILBOX]
    assert query["scope"] == ["https://outlook.office.com/SMTP.Send offline_access"]

    start_page = client.get(local_path(answer["start_url"]))
    assert start_page.status_code == 200
    assert "Sign in with Microsoft 365" in start_page.text
    assert start_page.headers["Referrer-Policy"] == "no-referrer"

    callback = client.get(local_path(provider_redirect(answer["authorization_url"])))
    assert callback.status_code == 200
    assert "Connected" in callback.text

    exchange = oauth_provider.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"
    assert pkce_challenge(exchange["code_verifier"]) == query["code_challenge"][0]
    assert test_email(runtime).ok

    status = client.get("/api/profiles/Orders/oauth").json()
    assert status["status"]["has_refresh_token"] is True
    assert status["client_id"] == CLIENT_ID
    assert not [warning for warning in status["warnings"] if "OAuth" in warning]


def test_google_connect_asks_for_offline_access(
    runtime: Runtime,
    client: TestClient,
    oauth_provider: OAuthServer,
    xoauth2_server: AuthServer,
) -> None:
    # Without access_type=offline Google issues no refresh token, and without
    # prompt=consent it issues one only at the first consent.
    xoauth2_profile(runtime, oauth_provider, xoauth2_server, preset="google")

    answer = client.post("/api/profiles/Orders/oauth/connect").json()
    query = parse_qs(urlsplit(answer["authorization_url"]).query)
    assert query["access_type"] == ["offline"]
    assert query["prompt"] == ["consent"]
    assert query["scope"] == ["https://mail.google.com/"]
    assert "Sign in with Google" in client.get(local_path(answer["start_url"])).text

    callback = client.get(local_path(provider_redirect(answer["authorization_url"])))
    assert "Connected" in callback.text
    assert oauth_provider.token_requests[-1]["grant_type"] == "authorization_code"
    status = client.get("/api/profiles/Orders/oauth").json()
    assert status["status"]["has_refresh_token"] is True


def test_denied_consent_shown_and_link_single_use(
    runtime: Runtime,
    client: TestClient,
    oauth_provider: OAuthServer,
    xoauth2_server: AuthServer,
) -> None:
    xoauth2_profile(runtime, oauth_provider, xoauth2_server)
    answer = client.post("/api/profiles/Orders/oauth/connect").json()
    redirect = provider_redirect(answer["authorization_url"], decision="deny")

    denied = client.get(local_path(redirect))

    assert denied.status_code == 400
    assert "access_denied" in denied.text
    assert "postroom profile oauth connect Orders" in denied.text
    again = client.get(local_path(redirect))
    assert again.status_code == 404
    assert "already used or expired" in again.text


def test_unknown_state_refused(client: TestClient) -> None:
    answer = client.get("/oauth/callback?state=forged&code=abc")

    assert answer.status_code == 404
    assert client.get("/oauth/start/forged").status_code == 404


def test_connect_needs_xoauth2_profile(
    client: TestClient, runtime: Runtime, xoauth2_server: AuthServer
) -> None:
    add_profile(runtime, xoauth2_server.port)

    answer = client.post("/api/profiles/Orders/oauth/connect")

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "mechanism"]


def test_connect_in_chromium(
    runtime: Runtime,
    live_server: str,
    oauth_provider: OAuthServer,
    xoauth2_server: AuthServer,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    xoauth2_profile(runtime, oauth_provider, xoauth2_server)
    token = api_token(runtime)
    answer = httpx.post(
        f"{live_server}/api/profiles/Orders/oauth/connect",
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert answer["redirect_uri"] == f"{live_server}/oauth/callback"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(answer["start_url"])
            expect(page.get_by_role("heading")).to_have_text(
                "Connect email profile Orders"
            )
            page.get_by_role("link", name="Sign in with Microsoft 365").click()
            page.get_by_role("link", name="Accept").click()
            expect(page.locator("#outcome")).to_have_text("Connected")
            assert page.url.startswith(f"{live_server}/oauth/callback?")
        finally:
            browser.close()

    assert test_email(runtime).ok
    assert xoauth2_server.handler.messages[0].login == MAILBOX
