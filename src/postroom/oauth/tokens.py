"""Access tokens for XOAUTH2 profiles: cached, refreshed, rotated, alerted.

An access token is reused until shortly before it expires. A refresh runs
with the profile's grant row locked, so workers on several machines never
spend the same refresh token twice (providers that rotate refresh tokens
invalidate the old one at first use). A rotated refresh token is saved in
the same transaction as the access token it came with.

A failed refresh is recorded on the grant with the provider's error. The
first failure of a run raises an alert in the delivery log and a metric.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from postroom import metrics
from postroom.clock import utcnow
from postroom.crypto import SecretBox
from postroom.domain.connection import connection_settings
from postroom.domain.db import transaction
from postroom.domain.models import AuthMechanism, Profile
from postroom.domain.oauth_models import OAuthGrant
from postroom.domain.validation import column_length
from postroom.oauth.client import OAuthClient, TokenResponse
from postroom.smtp.mechanisms.xoauth2 import AccessTokenError
from postroom.smtp.settings import ConnectionSettings
from postroom.smtp.transcript import mask_secrets, secret_forms

# Alerts go where operators watch deliveries.
log = logging.getLogger("postroom.delivery")

# A cached access token is used until this long before it expires, so it
# cannot run out between AUTH and the end of a batch.
EXPIRY_MARGIN = timedelta(minutes=5)
# Lifetime assumed when the provider does not say (RFC 6749 makes
# expires_in optional); Microsoft and Google both issue one-hour tokens.
DEFAULT_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime
    # True when this call got it from the provider rather than the cache.
    fresh: bool


def oauth_client(profile: Profile, box: SecretBox) -> OAuthClient:
    if profile.oauth_token_endpoint_encrypted is None:
        raise AccessTokenError(
            "the profile has no OAuth token endpoint", error="not_configured"
        )
    if profile.oauth_client_id_encrypted is None:
        raise AccessTokenError(
            "the profile has no OAuth client id", error="not_configured"
        )
    secret = profile.oauth_client_secret_encrypted
    return OAuthClient(
        token_endpoint=box.decrypt(profile.oauth_token_endpoint_encrypted),
        client_id=box.decrypt(profile.oauth_client_id_encrypted),
        client_secret=box.decrypt(secret) if secret is not None else None,
    )


def _cached(
    grant: OAuthGrant, box: SecretBox, now: datetime, stale: str | None
) -> IssuedToken | None:
    if grant.access_token_encrypted is None or grant.access_token_expires_at is None:
        return None
    if grant.access_token_expires_at - EXPIRY_MARGIN <= now:
        return None
    token = box.decrypt(grant.access_token_encrypted)
    if token == stale:
        return None
    return IssuedToken(token, grant.access_token_expires_at, fresh=False)


def _lock_grant(session: Session, profile_id: int) -> OAuthGrant | None:
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks; a write takes the database's write lock
        # for the rest of the transaction, which serializes refreshes.
        session.execute(
            update(OAuthGrant)
            .where(OAuthGrant.profile_id == profile_id)
            .values(alerted=OAuthGrant.alerted)
        )
        return session.get(OAuthGrant, profile_id, populate_existing=True)
    return session.scalars(
        select(OAuthGrant).where(OAuthGrant.profile_id == profile_id).with_for_update()
    ).one_or_none()


def get_access_token(
    sessions: sessionmaker[Session],
    box: SecretBox,
    profile_id: int,
    *,
    stale: str | None = None,
    force: bool = False,
) -> IssuedToken:
    """Return a valid access token, refreshing it when needed.

    ``stale`` is a token the server has just rejected: it is not returned
    again even if its expiry has not come. ``force`` always refreshes.
    """
    now = utcnow()
    if not force:
        with transaction(sessions) as session:
            grant = session.get(OAuthGrant, profile_id)
            if grant is not None:
                cached = _cached(grant, box, now, stale)
                if cached is not None:
                    return cached

    failure: AccessTokenError | None = None
    with transaction(sessions) as session:
        # The lock comes first: on SQLite a transaction that has read before
        # it writes cannot wait for another writer and fails at once.
        grant = _lock_grant(session, profile_id)
        profile = session.get(Profile, profile_id)
        if profile is None:
            raise AccessTokenError("the profile no longer exists", error="not_found")
        if grant is None or grant.refresh_token_encrypted is None:
            raise AccessTokenError(
                f"profile {profile.name!r} is not connected to its OAuth account yet",
                error="not_connected",
            )
        # Another worker may have refreshed while this one waited for the lock.
        cached = None if force else _cached(grant, box, utcnow(), stale)
        if cached is not None:
            return cached

        refresh_token = box.decrypt(grant.refresh_token_encrypted)
        try:
            client = oauth_client(profile, box)
            scope = (
                box.decrypt(profile.oauth_scope_encrypted)
                if profile.oauth_scope_encrypted is not None
                else None
            )
            response = client.refresh(refresh_token, scope)
        except AccessTokenError as exc:
            failure = _masked(exc, [refresh_token, client_secret(profile, box)])
        else:
            return _store(grant, box, response, refresh_token, profile.name)

    assert failure is not None
    _record_failure(sessions, profile_id, failure)
    raise failure


def client_secret(profile: Profile, box: SecretBox) -> str | None:
    secret = profile.oauth_client_secret_encrypted
    return box.decrypt(secret) if secret is not None else None


def _masked(exc: AccessTokenError, secrets: list[str | None]) -> AccessTokenError:
    """Remove our own secrets from a provider's error, in case it echoes them."""
    forms = [form for secret in secrets if secret for form in secret_forms(secret)]
    exc.message = mask_secrets(exc.message, forms)
    if exc.description:
        exc.description = mask_secrets(exc.description, forms)
    return exc


def _store(
    grant: OAuthGrant,
    box: SecretBox,
    response: TokenResponse,
    refresh_token: str,
    profile_name: str,
) -> IssuedToken:
    now = utcnow()
    lifetime = (
        timedelta(seconds=response.expires_in)
        if response.expires_in
        else DEFAULT_LIFETIME
    )
    expires_at = now + lifetime
    grant.access_token_encrypted = box.encrypt(response.access_token)
    grant.access_token_expires_at = expires_at
    grant.refreshed_at = now
    if response.refresh_token and response.refresh_token != refresh_token:
        # Rotation: the old refresh token is dead from now on at the
        # provider, so the new one must be saved before anything else.
        grant.refresh_token_encrypted = box.encrypt(response.refresh_token)
        grant.refresh_token_expires_at = None
    if response.refresh_token_expires_in:
        grant.refresh_token_expires_at = now + timedelta(
            seconds=response.refresh_token_expires_in
        )
    recovered = grant.failed_at is not None
    grant.failed_at = None
    grant.failure_error = None
    grant.failure_description = None
    grant.failure_status = None
    grant.alerted = False

    metrics.OAUTH_REFRESHES.labels(profile=profile_name, result="ok").inc()
    metrics.OAUTH_REFRESH_FAILING.labels(profile=profile_name).set(0)
    if recovered:
        log.info("OAuth token refresh works again", extra={"profile": profile_name})
    return IssuedToken(response.access_token, expires_at, fresh=True)


def _record_failure(
    sessions: sessionmaker[Session], profile_id: int, failure: AccessTokenError
) -> None:
    with transaction(sessions) as session:
        profile = session.get(Profile, profile_id)
        grant = session.get(OAuthGrant, profile_id)
        if profile is None or grant is None:
            return
        grant.failed_at = utcnow()
        # The provider chooses the error code. One longer than the column is
        # cut, so the failure is still recorded.
        limit = column_length(OAuthGrant.failure_error)
        grant.failure_error = failure.error[:limit] if failure.error else None
        grant.failure_description = failure.description
        grant.failure_status = failure.status
        first = not grant.alerted
        grant.alerted = True
        name = profile.name

    metrics.OAUTH_REFRESHES.labels(profile=name, result=failure.error or "error").inc()
    metrics.OAUTH_REFRESH_FAILING.labels(profile=name).set(1)
    fields = {
        "profile": name,
        "oauth_error": failure.error,
        "oauth_error_description": failure.description,
        "http_status": failure.status,
    }
    if first:
        metrics.OAUTH_REFRESH_ALERTS.labels(profile=name).inc()
        advice = (
            "the token endpoint is unavailable; delivery retries"
            if failure.transient
            else "reconnect the account"
        )
        log.error(
            f"ALERT: OAuth token refresh failed; {advice}",
            extra={"alert": "oauth_refresh_failed", **fields},
        )
    else:
        log.warning("OAuth token refresh failed again", extra=fields)


class GrantTokenSource:
    """The token source XOAUTH2 uses for one profile during one session or batch."""

    def __init__(
        self, sessions: sessionmaker[Session], box: SecretBox, profile_id: int
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._profile_id = profile_id
        self._issued: IssuedToken | None = None

    async def access_token(self, *, refresh: bool = False) -> tuple[str, bool]:
        issued = self._issued
        usable = issued is not None and issued.expires_at - EXPIRY_MARGIN > utcnow()
        if usable and not refresh:
            assert issued is not None
            return issued.token, issued.fresh
        stale = issued.token if refresh and issued is not None else None
        issued = await asyncio.to_thread(
            get_access_token, self._sessions, self._box, self._profile_id, stale=stale
        )
        self._issued = issued
        return issued.token, issued.fresh


def profile_connection_settings(
    profile: Profile, sessions: sessionmaker[Session], box: SecretBox
) -> ConnectionSettings:
    """Return the profile's connection settings with its OAuth token source attached."""
    settings = connection_settings(profile, box)
    if profile.mechanism != AuthMechanism.XOAUTH2:
        return settings
    options = dict(settings.mechanism_options)
    options["token_source"] = GrantTokenSource(sessions, box, profile.id)
    return replace(settings, mechanism_options=options)
