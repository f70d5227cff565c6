"""Token refresh on SQLite and PostgreSQL: one refresh for concurrent callers."""

from __future__ import annotations

import threading

from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.oauth_models import OAuthGrant
from postroom.oauth.tokens import IssuedToken, get_access_token
from postroom.runtime import Runtime
from tests.auth.conftest import CLIENT_ID, CLIENT_SECRET
from tests.auth.helpers import add_profile
from tests.peers.oauth_server import OAuthServer


def test_concurrent_refreshes_spend_refresh_token_once(
    any_runtime: Runtime, oauth_provider: OAuthServer
) -> None:
    # With rotation, a second refresh with the same token would fail.
    oauth_provider.rotate = True
    add_profile(
        any_runtime,
        2525,
        mechanism="XOAUTH2",
        login="orders@example.com",
        oauth_provider="google",
        oauth_client_id=CLIENT_ID,
        oauth_client_secret=CLIENT_SECRET,
        oauth_token_endpoint=oauth_provider.token_endpoint,
        oauth_refresh_token=oauth_provider.issue_refresh_token(CLIENT_ID),
    )
    with transaction(any_runtime.sessions) as session:
        profile_id = profiles.get_profile(session, "Orders").id

    issued: list[IssuedToken] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def refresh() -> None:
        start.wait()
        try:
            issued.append(
                get_access_token(any_runtime.sessions, any_runtime.secrets, profile_id)
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert oauth_provider.refresh_count() == 1
    assert len({token.token for token in issued}) == 1
    assert sum(token.fresh for token in issued) == 1
    with transaction(any_runtime.sessions) as session:
        grant = session.get(OAuthGrant, profile_id)
        assert grant is not None
        stored = any_runtime.secrets.decrypt(grant.refresh_token_encrypted or b"")
    assert not oauth_provider.refresh_tokens[stored].revoked
