"""The interactive connect flow: authorization code with PKCE (RFC 7636).

An operator starts a flow for a profile and opens its start page. The
provider's sign-in redirects back to Postroom's callback page with a code,
which Postroom exchanges for the first refresh token. The state parameter
ties the redirect to the flow: it is random, single-use, expires after
FLOW_LIFETIME, and only its SHA-256 is stored.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from postroom.clock import utcnow
from postroom.crypto import SecretBox
from postroom.domain import profile_auth
from postroom.domain.db import transaction
from postroom.domain.models import AuthMechanism, Profile
from postroom.domain.oauth_models import OAuthFlow
from postroom.domain.oauth_providers import preset, provider_label
from postroom.domain.profiles import release_held_messages
from postroom.domain.validation import column_length
from postroom.errors import InvalidInputError, NotFoundError
from postroom.oauth.tokens import oauth_client
from postroom.smtp.mechanisms.xoauth2 import AccessTokenError

FLOW_LIFETIME = timedelta(minutes=15)
CALLBACK_PATH = "/oauth/callback"


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def pkce_challenge(verifier: str) -> str:
    """Return the S256 code challenge of a verifier (RFC 7636, 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class StartedFlow:
    profile: str
    state: str
    start_path: str
    authorization_url: str
    redirect_uri: str
    expires_at: datetime


def start_flow(
    session: Session, box: SecretBox, profile: Profile, redirect_uri: str
) -> StartedFlow:
    """Create an authorization request for an XOAUTH2 profile."""
    if profile.mechanism != AuthMechanism.XOAUTH2:
        raise InvalidInputError(
            f"profile {profile.name!r} uses {profile.mechanism}, not XOAUTH2; set "
            "the auth mechanism to XOAUTH2 first",
            field="mechanism",
        )
    if profile.oauth_client_id_encrypted is None:
        raise InvalidInputError(
            f"profile {profile.name!r} has no OAuth client id; set oauth_client_id",
            field="oauth_client_id",
        )
    defaults = preset(profile.oauth_provider)
    endpoint = profile.oauth_authorization_endpoint or (
        defaults.authorization_endpoint if defaults else None
    )
    if endpoint is None:
        raise InvalidInputError(
            f"profile {profile.name!r} has no OAuth authorization endpoint; set "
            "oauth_authorization_endpoint or oauth_provider",
            field="oauth_authorization_endpoint",
        )

    # The redirect URI is built from public_url or, without it, from the Host
    # header of the request that started the flow.
    if len(redirect_uri) > column_length(OAuthFlow.redirect_uri):
        raise InvalidInputError(
            f"the redirect URI would be {len(redirect_uri)} characters long, more "
            f"than the {column_length(OAuthFlow.redirect_uri)} Postroom stores; set "
            "public_url to the shorter address browsers use to reach Postroom",
            field="public_url",
        )

    # 64 random bytes make an 86-character verifier, within RFC 7636's 43-128.
    verifier = secrets.token_urlsafe(64)
    state = secrets.token_urlsafe(32)
    scope = (
        box.decrypt(profile.oauth_scope_encrypted)
        if profile.oauth_scope_encrypted is not None
        else (defaults.scope if defaults else "")
    )
    parameters = {
        "response_type": "code",
        "client_id": box.decrypt(profile.oauth_client_id_encrypted),
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    if profile.login:
        parameters["login_hint"] = profile.login
    if defaults is not None:
        parameters.update(defaults.authorization_parameters)
    separator = "&" if "?" in endpoint else "?"
    authorization_url = endpoint + separator + urlencode(parameters)

    expires_at = utcnow() + FLOW_LIFETIME
    session.add(
        OAuthFlow(
            state_hash=_hash(state),
            profile_id=profile.id,
            code_verifier_encrypted=box.encrypt(verifier),
            authorization_url=authorization_url,
            redirect_uri=redirect_uri,
            expires_at=expires_at,
        )
    )
    return StartedFlow(
        profile=profile.name,
        state=state,
        start_path=f"/oauth/start/{state}",
        authorization_url=authorization_url,
        redirect_uri=redirect_uri,
        expires_at=expires_at,
    )


@dataclass(frozen=True)
class PendingFlow:
    profile: str
    provider: str
    login: str | None
    authorization_url: str


def _open_flow(session: Session, state: str) -> tuple[OAuthFlow, Profile]:
    flow = session.scalars(
        select(OAuthFlow).where(OAuthFlow.state_hash == _hash(state))
    ).one_or_none()
    if flow is None or flow.completed_at is not None or flow.expires_at <= utcnow():
        raise NotFoundError(
            "this sign-in link is unknown, already used or expired (links last "
            f"{int(FLOW_LIFETIME.total_seconds() // 60)} minutes); start again with "
            "`postroom profile oauth connect PROFILE`",
            field="state",
        )
    profile = session.get(Profile, flow.profile_id)
    if profile is None:
        raise NotFoundError("the profile of this sign-in link no longer exists")
    return flow, profile


def pending_flow(sessions: sessionmaker[Session], state: str) -> PendingFlow:
    with transaction(sessions) as session:
        flow, profile = _open_flow(session, state)
        return PendingFlow(
            profile=profile.name,
            provider=provider_label(profile.oauth_provider),
            login=profile.login,
            authorization_url=flow.authorization_url,
        )


@dataclass(frozen=True)
class CompletedFlow:
    profile: str
    login: str | None
    ok: bool
    error: str | None = None
    error_description: str | None = None


def complete_flow(
    sessions: sessionmaker[Session],
    box: SecretBox,
    state: str,
    *,
    code: str | None,
    error: str | None = None,
    error_description: str | None = None,
) -> CompletedFlow:
    """Finish a flow from the provider's redirect; store the refresh token."""
    with transaction(sessions) as session:
        flow, profile = _open_flow(session, state)
        flow.completed_at = utcnow()
        if error or not code:
            return CompletedFlow(
                profile.name,
                profile.login,
                ok=False,
                error=error or "missing_code",
                error_description=error_description
                or "the redirect carried neither a code nor an error",
            )
        verifier = box.decrypt(flow.code_verifier_encrypted)
        try:
            response = oauth_client(profile, box).exchange_code(
                code, flow.redirect_uri, verifier
            )
        except AccessTokenError as exc:
            return CompletedFlow(
                profile.name,
                profile.login,
                ok=False,
                error=exc.error,
                error_description=exc.description or exc.message,
            )
        if not response.refresh_token:
            return CompletedFlow(
                profile.name,
                profile.login,
                ok=False,
                error="no_refresh_token",
                error_description="the provider issued no refresh token; the "
                "scope must include offline_access (Microsoft) or the request "
                "must ask for offline access (Google)",
            )
        now = utcnow()
        profile_auth.store_refresh_token(
            session,
            box,
            profile.id,
            response.refresh_token,
            expires_at=now + timedelta(seconds=response.refresh_token_expires_in)
            if response.refresh_token_expires_in
            else None,
            access_token=response.access_token,
            access_expires_at=now + timedelta(seconds=response.expires_in or 3600),
        )
        release_held_messages(session, profile)
        return CompletedFlow(profile.name, profile.login, ok=True)
