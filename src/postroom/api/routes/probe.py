"""Probe a server and recommend profile settings."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from postroom.api.deps import RuntimeDep, TokenDep
from postroom.diagnosis.probe import (
    apply_error,
    apply_recommendation,
    check_probe_request,
    run_probe,
)
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.models import AuthMechanism

router = APIRouter(prefix="/api/probe", tags=["probe"])


class ProbeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str
    ports: list[int] | None = Field(
        default=None, description="Default: 25, 465, 587 and 2525."
    )
    timeout: float = Field(default=10.0, description="Seconds allowed for each port.")
    total_timeout: float = Field(
        default=30.0, description="Seconds allowed for the whole probe."
    )
    ca_bundle: str | None = None
    ehlo_name: str | None = None
    login: str | None = Field(
        default=None, description="Test this login on the recommended port."
    )
    password: SecretStr | None = None
    mechanism: AuthMechanism | None = None
    apply: str | None = Field(
        default=None,
        description="Profile to write the recommended settings to.",
    )
    allow_plaintext: bool = Field(
        default=False,
        description="Let the login test and apply use a port without TLS "
        "(security none), which sends the password unencrypted.",
    )


@router.post("")
async def probe(
    body: ProbeBody, runtime: RuntimeDep, _token: TokenDep
) -> dict[str, Any]:
    """Probe the server's ports; never sends a message, and sends credentials
    only when a login is given."""
    request = check_probe_request(
        body.host,
        body.ports,
        port_timeout=body.timeout,
        total_timeout=body.total_timeout,
        ca_bundle=body.ca_bundle,
        ehlo_name=body.ehlo_name,
        login=body.login,
        password=body.password.get_secret_value() if body.password else None,
        mechanism=body.mechanism.value if body.mechanism else None,
        allow_plaintext=body.allow_plaintext,
    )
    profile_name = body.apply

    def check_profile() -> None:
        with transaction(runtime.sessions) as session:
            profiles.get_profile(session, profile_name or "")

    if profile_name is not None:
        # Fail on an unknown profile before spending time on the probe.
        await asyncio.to_thread(check_profile)

    result = await run_probe(request)
    answer = result.as_dict()
    if profile_name is None:
        return answer
    not_applied_reason = apply_error(result, profile_name, body.allow_plaintext)
    recommendation = result.recommendation
    if not_applied_reason is None and recommendation is not None:

        def apply() -> None:
            with transaction(runtime.sessions) as session:
                apply_recommendation(
                    session,
                    runtime.secrets,
                    profile_name,
                    recommendation,
                    ca_bundle=body.ca_bundle,
                )

        await asyncio.to_thread(apply)
        answer["applied_to"] = profile_name
    else:
        answer["apply_error"] = not_applied_reason
    return answer
