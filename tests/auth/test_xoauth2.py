"""XOAUTH2 with token refresh against a local OAuth provider and SMTP server."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from postroom.clock import utcnow
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.oauth_models import OAuthGrant
from postroom.runtime import Runtime
from tests.auth.conftest import CLIENT_ID, CLIENT_SECRET
from tests.auth.helpers import (
    add_profile,
    drain,
    queue,
    test_email,
    update_profile,
    view,
)
from tests.peers.auth_smtp import AuthServer
from tests.peers.kdc import free_udp_tcp_port
from tests.peers.oauth_server import OAuthServer
from tests.peers.xoauth2_smtp import XOAuth2Handler

MAILBOX = "orders@example.com"


def oauth_warnings(view: Any) -> list[str]:
    # The test servers run without TLS, so every view also warns about that.
    return [warning for warning in view.warnings if "OAuth" in warning]


def connect_profile(
    runtime: Runtime,
    provider: OAuthServer,
    server: AuthServer,
    name: str = "Orders",
    **changes: Any,
) -> str:
    refresh_token = provider.issue_refresh_token(CLIENT_ID)
    values: dict[str, Any] = {
        "name": name,
        "mechanism": "XOAUTH2",
        "login": MAILBOX,
        "oauth_provider": "microsoft",
        "oauth_client_id": CLIENT_ID,
        "oauth_client_secret": CLIENT_SECRET,
        "oauth_token_endpoint": provider.token_endpoint,
        "oauth_refresh_token": refresh_token,
    }
    values.update(changes)
    add_profile(runtime, server.port, **values)
    return refresh_token


def grant_of(runtime: Runtime, name: str = "Orders") -> OAuthGrant:
    with transaction(runtime.sessions) as session:
        profile = profiles.get_profile(session, name)
        grant = session.get(OAuthGrant, profile.id)
        assert grant is not None
        return grant


def profile_view(runtime: Runtime, name: str = "Orders") -> profiles.ProfileView:
    with transaction(runtime.sessions) as session:
        return profiles.ProfileView.of(profiles.get_profile(session, name))


def handler_of(server: AuthServer) -> XOAuth2Handler:
    assert isinstance(server.handler, XOAuth2Handler)
    return server.handler


def move_clock(monkeypatch: pytest.MonkeyPatch, delta: timedelta) -> None:
    moved: datetime = utcnow() + delta
    monkeypatch.setattr("postroom.oauth.tokens.utcnow", lambda: moved)


def sample(name: str, profile: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"profile": profile, **labels}) or 0.0


def test_test_email_sends_with_refreshed_token(
    runtime: Runtime, oauth_provider: OAuthServer, xoauth2_server: AuthServer
) -> None:
    connect_profile(runtime, oauth_provider, xoauth2_server)

    result = test_email(runtime)

    assert result.ok, result.cause
    assert handler_of(xoauth2_server).messages[0].login == MAILBOX
    form = oauth_provider.token_requests[0]
    assert form["grant_type"] == "refresh_token"
    assert form["client_id"] == CLIENT_ID
    assert form["scope"] == "https://outlook.office.com/SMTP.Send offline_access"


def test_access_token_cached_until_near_expiry(
    runtime: Runtime,
    oauth_provider: OAuthServer,
    xoauth2_server: AuthServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connect_profile(runtime, oauth_provider, xoauth2_server)

    assert test_email(runtime).ok
    assert test_email(runtime).ok
    assert oauth_provider.refresh_count() == 1

    # 50 minutes into a one-hour token: still cached.
    move_clock(monkeypatch, timedelta(minutes=50))
    assert test_email(runtime).ok
    assert oauth_provider.refresh_count() == 1

    # 56 minutes: within five minutes of expiry, so it is refreshed.
    move_clock(monkeypatch, timedelta(minutes=56))
    assert test_email(runtime).ok
    assert oauth_provider.refresh_count() == 2


def test_rotated_refresh_token_saved(
    runtime: Runtime,
    oauth_provider: OAuthServer,
    xoauth2_server: AuthServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    oauth_provider.rotate = True
    first = connect_profile(runtime, oauth_provider, xoauth2_server)

    assert test_email(runtime).ok
    stored = runtime.secrets.decrypt(grant_of(runtime).refresh_token_encrypted or b"")
    assert stored != first
    assert stored in oauth_provider.refresh_tokens
    assert oauth_provider.refresh_tokens[first].revoked

    # The next refresh works only with the rotated token.
    move_clock(monkeypatch, timedelta(hours=2))
    assert test_email(runtime).ok
    assert oauth_provider.refresh_count() == 2
    assert oauth_provider.token_requests[1]["refresh_token"] == stored


def test_revoked_consent_diagnosed_and_alerted(
    runtime: Runtime,
    oauth_provider: OAuthServer,
    xoauth2_server: AuthServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refresh_token = connect_profile(runtime, oauth_provider, xoauth2_server, "Revoked")
    assert test_email(runtime, "Revoked").ok
    oauth_provider.revoke(refresh_token)
    move_clock(monkeypatch, timedelta(hours=2))
    alerts_before = sample("postroom_oauth_refresh_alerts_total", "Revoked")

    with caplog.at_level(logging.INFO, logger="postroom.delivery"):
        result = test_email(runtime, "Revoked")
        again = test_email(runtime, "Revoked")

    assert not result.ok
    assert result.step == "auth"
    assert result.diagnosis == "oauth-refresh-token-rejected"
    assert "invalid_grant" in (result.reply_text or "")
    assert "AADSTS50173" in (result.cause or "")
    assert "Reconnect the account" in (result.fix or "")
    assert result.transient is False
    assert again.diagnosis == "oauth-refresh-token-rejected"

    alerts = [record for record in caplog.records if getattr(record, "alert", None)]
    assert len(alerts) == 1
    assert alerts[0].levelno == logging.ERROR
    assert alerts[0].alert == "oauth_refresh_failed"
    assert alerts[0].oauth_error == "invalid_grant"
    assert sample("postroom_oauth_refresh_alerts_total", "Revoked") == alerts_before + 1
    assert sample("postroom_oauth_refresh_failing", "Revoked") == 1.0
    assert (
        sample("postroom_oauth_refreshes_total", "Revoked", result="invalid_grant") >= 2
    )

    shown = profile_view(runtime, "Revoked")
    assert shown.oauth is not None
    assert shown.oauth.error == "invalid_grant"
    assert any("refresh failed" in warning for warning in shown.warnings)


def test_expired_refresh_token_diagnosed(
    runtime: Runtime, oauth_provider: OAuthServer, xoauth2_server: AuthServer
) -> None:
    add_profile(
        runtime,
        xoauth2_server.port,
        mechanism="XOAUTH2",
        login=MAILBOX,
        oauth_provider="microsoft",
        oauth_client_id=CLIENT_ID,
        oauth_client_secret=CLIENT_SECRET,
        oauth_token_endpoint=oauth_provider.token_endpoint,
        # Expired at the provider a second ago.
        oauth_refresh_token=oauth_provider.issue_refresh_token(CLIENT_ID, lifetime=-1),
    )

    result = test_email(runtime)

    assert result.diagnosis == "oauth-refresh-token-rejected"
    assert "AADSTS700082" in (result.cause or "")


@pytest.mark.parametrize(
    ("error", "entry", "setting"),
    [
        ("invalid_scope", "oauth-scope-rejected", "oauth_scope"),
        ("invalid_request", "oauth-refresh-failed", "oauth_refresh_token"),
    ],
)
def test_other_refresh_errors_diagnosed(
    runtime: Runtime,
    oauth_provider: OAuthServer,
    xoauth2_server: AuthServer,
    error: str,
    entry: str,
    setting: str,
) -> None:
    connect_profile(runtime, oauth_provider, xoauth2_server)
    oauth_provider.refresh_error = {
        "error": error,
        "error_description": "AADSTS70011: The provided value for scope is not valid.",
    }

    result = test_email(runtime)

    assert not result.ok
    assert result.step == "auth"
    assert result.diagnosis == entry
    assert error in (result.reply_text or "")
    assert result.setting == setting
    assert result.transient is False
    assert not handler_of(xoauth2_server).messages


def test_wrong_client_secret_diagnosed(
    runtime: Runtime, oauth_provider: OAuthServer, xoauth2_server: AuthServer
) -> None:
    connect_profile(
        runtime, oauth_provider, xoauth2_server, oauth_client_secret="old-secret"
    )

    result = test_email(runtime)

    assert not result.ok
    assert result.diagnosis == "oauth-client-rejected"
    assert "invalid_client" in (result.reply_text or "")
    assert result.setting == "oauth_client_secret"
    assert "Reconnect the account" in (result.fix or "")


def test_token_endpoint_unreachable_is_transient(
    runtime: Runtime, oauth_provider: OAuthServer, xoauth2_server: AuthServer
) -> None:
    closed = f"http://127.0.0.1:{free_udp_tcp_port()}/token"
    connect_profile(
        runtime, oauth_provider, xoauth2_server, oauth_token_endpoint=closed
    )

    result = test_email(runtime)

    assert result.diagnosis == "oauth-token-endpoint-unavailable"
    assert result.transient is True


def test_revoked_access_token_refreshed_and_retried(
    runtime: Runtime, oauth_provider: OAuthServer, xoauth2_server: AuthServer
) -> None:
    connect_profile(runtime, oauth_provider, xoauth2_server)
    assert test_email(runtime).ok
    # The provider kills the cached access token before it expires.
    for grant in oauth_provider.access_tokens.values():
        grant.revoked = True

    result = test_email(runtime)

    assert result.ok, result.cause
    assert oauth_provider.refresh_count() == 2
    assert len(handler_of(xoauth2_server).rejected_tokens) == 1


def test_server_rejecting_fresh_token_diagnosed(
    runtime: Runtime, oauth_provider: OAuthServer, xoauth2_server: AuthServer
) -> None:
    # The app registration lacks the SMTP permission.
    oauth_provider.scope_granted = "openid offline_access"
    connect_profile(runtime, oauth_provider, xoauth2_server)

    result = test_email(runtime)

    assert not result.ok
    assert result.reply_code == 535
    assert result.diagnosis == "xoauth2-token-rejected"
    assert "SMTP.Send" in (result.fix or "")


def test_long_access_token_sent_after_334(
    runtime: Runtime, oauth_provider: OAuthServer, xoauth2_server: AuthServer
) -> None:
    # Microsoft's access tokens are JWTs of well over a kilobyte.
    oauth_provider.access_token_length = 2000
    connect_profile(runtime, oauth_provider, xoauth2_server)

    assert test_email(runtime).ok
    assert handler_of(xoauth2_server).initial_on_auth_line == [False]


def test_short_access_token_on_auth_line(
    runtime: Runtime, oauth_provider: OAuthServer, xoauth2_server: AuthServer
) -> None:
    connect_profile(runtime, oauth_provider, xoauth2_server)

    assert test_email(runtime).ok
    assert handler_of(xoauth2_server).initial_on_auth_line == [True]


def test_warning_before_known_refresh_token_expiry(
    runtime: Runtime, oauth_provider: OAuthServer, xoauth2_server: AuthServer
) -> None:
    oauth_provider.rotate = True
    oauth_provider.refresh_token_lifetime = 3 * 24 * 3600
    connect_profile(runtime, oauth_provider, xoauth2_server)
    assert oauth_warnings(profile_view(runtime)) == []

    assert test_email(runtime).ok

    shown = profile_view(runtime)
    assert shown.oauth is not None
    assert shown.oauth.refresh_token_expires_at is not None
    (warning,) = oauth_warnings(shown)
    assert "refresh token expires" in warning
    assert "reconnect the account" in warning


def test_no_warning_for_distant_expiry(
    runtime: Runtime, oauth_provider: OAuthServer, xoauth2_server: AuthServer
) -> None:
    oauth_provider.rotate = True
    oauth_provider.refresh_token_lifetime = 90 * 24 * 3600
    connect_profile(runtime, oauth_provider, xoauth2_server)

    assert test_email(runtime).ok
    assert oauth_warnings(profile_view(runtime)) == []


def test_worker_delivers_with_xoauth2(
    runtime: Runtime, oauth_provider: OAuthServer, xoauth2_server: AuthServer
) -> None:
    connect_profile(runtime, oauth_provider, xoauth2_server)
    message_pk = queue(runtime)

    assert drain(runtime) == 1

    assert view(runtime, message_pk)["status"] == "sent"
    received = handler_of(xoauth2_server).messages
    assert received[0].login == MAILBOX


def test_worker_holds_mail_until_reconnected(
    runtime: Runtime,
    oauth_provider: OAuthServer,
    xoauth2_server: AuthServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refresh_token = connect_profile(runtime, oauth_provider, xoauth2_server, "Held")
    oauth_provider.revoke(refresh_token)
    message_pk = queue(runtime, "Held")

    with caplog.at_level(logging.INFO, logger="postroom.delivery"):
        drain(runtime)

    held = view(runtime, message_pk)
    assert held["status"] == "held"
    assert "reconnect the account" in held["held_reason"]
    assert [r for r in caplog.records if getattr(r, "alert", None)]
    assert handler_of(xoauth2_server).messages == []

    # An administrator pastes a new refresh token: the message goes out.
    update_profile(
        runtime,
        "Held",
        oauth_refresh_token=oauth_provider.issue_refresh_token(CLIENT_ID),
    )
    assert view(runtime, message_pk)["status"] == "queued"
    drain(runtime)
    assert view(runtime, message_pk)["status"] == "sent"
    assert oauth_warnings(profile_view(runtime, "Held")) == []


def test_xoauth2_profile_needs_client_id(runtime: Runtime) -> None:
    from postroom.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as raised:
        add_profile(runtime, 2525, mechanism="XOAUTH2", login=MAILBOX)

    assert raised.value.field == "oauth_client_id"


def test_token_endpoint_must_be_https(runtime: Runtime) -> None:
    from postroom.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as raised:
        add_profile(
            runtime,
            2525,
            mechanism="XOAUTH2",
            login=MAILBOX,
            oauth_client_id=CLIENT_ID,
            oauth_token_endpoint="http://login.example.com/token",
        )

    assert raised.value.field == "oauth_token_endpoint"
    assert "https://" in raised.value.message
