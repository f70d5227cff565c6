"""Email profiles: CRUD and the test email."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict

from postroom.api.deps import RuntimeDep, TokenDep
from postroom.diagnosis.testmail import send_test_email
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.validation import check_address, parse_mailbox
from postroom.errors import InvalidInputError
from postroom.oauth.tokens import profile_connection_settings
from postroom.smtp.settings import ConnectionSettings

router = APIRouter(prefix="/api/profiles", tags=["profiles"])


class TestEmailRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str


@router.get("")
def list_profiles(runtime: RuntimeDep, _token: TokenDep) -> list[profiles.ProfileView]:
    with transaction(runtime.sessions) as session:
        return [
            profiles.ProfileView.of(profile)
            for profile in profiles.list_profiles(session)
        ]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_profile(
    data: profiles.ProfileInput,
    runtime: RuntimeDep,
    _token: TokenDep,
    response: Response,
) -> profiles.ProfileView:
    with transaction(runtime.sessions) as session:
        profile = profiles.create_profile(session, runtime.secrets, data)
        view = profiles.ProfileView.of(profile)
    response.headers["Location"] = f"/api/profiles/{quote(view.name, safe='')}"
    return view


@router.get("/{name}")
def get_profile(
    name: str, runtime: RuntimeDep, _token: TokenDep
) -> profiles.ProfileView:
    with transaction(runtime.sessions) as session:
        return profiles.ProfileView.of(profiles.get_profile(session, name))


@router.patch("/{name}")
def update_profile(
    name: str, data: profiles.ProfileInput, runtime: RuntimeDep, _token: TokenDep
) -> profiles.ProfileView:
    with transaction(runtime.sessions) as session:
        profile = profiles.update_profile(session, runtime.secrets, name, data)
        return profiles.ProfileView.of(profile)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_profile(name: str, runtime: RuntimeDep, _token: TokenDep) -> None:
    with transaction(runtime.sessions) as session:
        profiles.delete_profile(session, name)


@router.post("/{name}/release")
def release_profile(name: str, runtime: RuntimeDep, _token: TokenDep) -> dict[str, int]:
    """Queue the profile's held messages again; 409 while it cannot send."""
    with transaction(runtime.sessions) as session:
        released = profiles.release_profile(session, name)
    return {"released": released}


@router.post("/{name}/test")
async def test_profile(
    name: str, request: TestEmailRequest, runtime: RuntimeDep, _token: TokenDep
) -> dict[str, object]:
    """Send a test email; ``ok`` says whether the server accepted it."""
    recipient = check_address(parse_mailbox(request.to, "to").addr_spec, "to")

    def load() -> tuple[ConnectionSettings, str]:
        with transaction(runtime.sessions) as session:
            profile = profiles.get_profile(session, name)
            if not profile.from_address:
                raise InvalidInputError(
                    f"profile {name!r} has no From address; set from_address first",
                    field="from_address",
                )
            settings = profile_connection_settings(
                profile, runtime.sessions, runtime.secrets
            )
            return settings, profile.from_address

    settings, sender = await asyncio.to_thread(load)
    result = await send_test_email(name, settings, sender, recipient)
    return result.as_dict()
