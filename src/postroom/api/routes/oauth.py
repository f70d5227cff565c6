"""OAuth for XOAUTH2 profiles: start the connect flow, check the grant."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from postroom.api.deps import RuntimeDep, TokenDep
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.oauth.flow import CALLBACK_PATH, start_flow
from postroom.oauth.status import (
    OAuthSettingsView,
    RefreshResult,
    refresh_now,
    settings_view,
)

router = APIRouter(prefix="/api/profiles", tags=["oauth"])


class ConnectAnswer(BaseModel):
    profile: str
    # Postroom's page that explains the step and links to the provider.
    start_url: str
    authorization_url: str
    redirect_uri: str
    expires_at: datetime


def public_url(request: Request, configured: str | None) -> str:
    """Return the base URL browsers use to reach Postroom, for the OAuth redirect."""
    if configured:
        return configured.rstrip("/")
    return str(request.base_url).rstrip("/")


@router.get("/{name}/oauth")
def get_oauth(name: str, runtime: RuntimeDep, _token: TokenDep) -> OAuthSettingsView:
    with transaction(runtime.sessions) as session:
        return settings_view(profiles.get_profile(session, name), runtime.secrets)


@router.post("/{name}/oauth/connect")
def connect(
    name: str, request: Request, runtime: RuntimeDep, _token: TokenDep
) -> ConnectAnswer:
    """Start the authorization-code flow; open ``start_url`` in a browser."""
    base = public_url(request, runtime.settings.public_url)
    with transaction(runtime.sessions) as session:
        profile = profiles.get_profile(session, name)
        flow = start_flow(session, runtime.secrets, profile, base + CALLBACK_PATH)
    return ConnectAnswer(
        profile=flow.profile,
        start_url=base + flow.start_path,
        authorization_url=flow.authorization_url,
        redirect_uri=flow.redirect_uri,
        expires_at=flow.expires_at,
    )


@router.post("/{name}/oauth/refresh")
async def refresh(name: str, runtime: RuntimeDep, _token: TokenDep) -> RefreshResult:
    """Get a new access token now; ``ok`` is true when the provider issued one."""
    return await refresh_now(runtime.sessions, runtime.secrets, name)
