"""The parts of a profile's OAuth setup an operator may see, never a token or secret."""

from __future__ import annotations

import asyncio
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from postroom.crypto import SecretBox
from postroom.domain import profile_auth, profiles
from postroom.domain.db import transaction
from postroom.domain.models import Profile
from postroom.errors import InvalidInputError
from postroom.oauth.tokens import get_access_token
from postroom.smtp.mechanisms.xoauth2 import AccessTokenError


class OAuthSettingsView(BaseModel):
    profile: str
    login: str | None
    provider: str | None
    client_id: str | None
    token_endpoint: str | None
    scope: str | None
    status: profile_auth.OAuthStatus
    warnings: list[str]


def _plain(box: SecretBox, value: bytes | None) -> str | None:
    return box.decrypt(value) if value is not None else None


def settings_view(profile: Profile, box: SecretBox) -> OAuthSettingsView:
    status = profile_auth.oauth_status(profile)
    if status is None:
        raise InvalidInputError(
            f"profile {profile.name!r} does not use XOAUTH2; set its auth mechanism "
            "and OAuth client first",
            field="mechanism",
        )
    return OAuthSettingsView(
        profile=profile.name,
        login=profile.login,
        provider=profile.oauth_provider,
        client_id=_plain(box, profile.oauth_client_id_encrypted),
        token_endpoint=_plain(box, profile.oauth_token_endpoint_encrypted),
        scope=_plain(box, profile.oauth_scope_encrypted),
        status=status,
        warnings=profile_auth.warnings(profile, status),
    )


class RefreshResult(BaseModel):
    ok: bool
    access_token_expires_at: datetime | None = None
    error: str | None = None
    error_description: str | None = None
    message: str | None = None
    # True when retrying later can work (the endpoint was unreachable or
    # answered 5xx or 429); reconnecting the account would not help then.
    transient: bool = False


async def refresh_now(
    sessions: sessionmaker[Session], box: SecretBox, name: str
) -> RefreshResult:
    """Get a new access token now, to check the grant; the token is not returned."""

    def profile_id() -> int:
        with transaction(sessions) as session:
            profile = profiles.get_profile(session, name)
            settings_view(profile, box)
            return profile.id

    pk = await asyncio.to_thread(profile_id)
    try:
        issued = await asyncio.to_thread(
            get_access_token, sessions, box, pk, force=True
        )
    except AccessTokenError as exc:
        return RefreshResult(
            ok=False,
            error=exc.error,
            error_description=exc.description,
            message=exc.message,
            transient=exc.transient,
        )
    return RefreshResult(ok=True, access_token_expires_at=issued.expires_at)
