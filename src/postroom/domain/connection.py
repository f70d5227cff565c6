"""Translate a stored profile into the settings the SMTP transport takes."""

from __future__ import annotations

from typing import Any

from postroom.crypto import SecretBox
from postroom.domain.models import AuthMechanism, Profile
from postroom.errors import InvalidInputError
from postroom.smtp.settings import ConnectionSettings


def connection_settings(profile: Profile, box: SecretBox) -> ConnectionSettings:
    if not profile.host:
        raise InvalidInputError(
            f"profile {profile.name!r} has no outbound server; set host first",
            field="host",
        )
    password = (
        box.decrypt(profile.password_encrypted)
        if profile.password_encrypted is not None
        else None
    )
    options: dict[str, Any] = {}
    if profile.mechanism == AuthMechanism.KERBEROS:
        options = {
            "service_principal": profile.kerberos_service_principal,
            "keytab": profile.kerberos_keytab,
            "config": profile.kerberos_config,
        }
    certificate = _decrypt(box, profile.client_certificate_encrypted)
    key = _decrypt(box, profile.client_key_encrypted)
    return ConnectionSettings(
        host=profile.host,
        port=profile.port,
        security=profile.security,
        login=profile.login,
        password=password,
        mechanism=profile.mechanism,
        ehlo_name=profile.ehlo_name,
        ca_bundle=profile.ca_bundle,
        connect_timeout=profile.connect_timeout,
        command_timeout=profile.command_timeout,
        mechanism_options=options,
        client_certificate=certificate,
        client_key=key,
    )


def _decrypt(box: SecretBox, value: bytes | None) -> str | None:
    return box.decrypt(value) if value is not None else None
