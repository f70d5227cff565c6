"""Profile settings of the enterprise and OAuth auth mechanisms.

Kerberos (service principal, keytab, krb5.conf), the OAuth 2.0 client of
XOAUTH2, and a TLS client certificate: validated, encrypted where the
profile keeps secrets, and shown without them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel, SecretStr
from sqlalchemy.orm import Session, object_session

from postroom.clock import utcnow
from postroom.crypto import SecretBox
from postroom.domain.models import AuthMechanism, Profile, Security
from postroom.domain.oauth_models import OAuthGrant
from postroom.domain.oauth_providers import preset
from postroom.domain.validation import (
    check_file,
    check_length,
    check_single_line,
    column_length,
)
from postroom.errors import InvalidInputError

# A refresh token whose known expiry is this close gets a warning.
REFRESH_TOKEN_WARNING = timedelta(days=7)

# service/host, optionally @REALM: smtp/mail.example.com@EXAMPLE.COM.
_SERVICE_PRINCIPAL = re.compile(r"^[^\s/@]+/[^\s/@]+(@[^\s/@]+)?$")
_LOOPBACK_NAMES = ("localhost",)


class OAuthStatus(BaseModel):
    """The state of a profile's OAuth grant, without any token."""

    provider: str | None
    authorization_endpoint: str | None
    has_client_id: bool
    has_client_secret: bool
    has_refresh_token: bool
    connected_at: datetime | None
    access_token_expires_at: datetime | None
    refresh_token_expires_at: datetime | None
    refreshed_at: datetime | None
    failed_at: datetime | None
    error: str | None
    error_description: str | None


@dataclass
class AuthChanges:
    """Validated changes to the auth settings, applied after every check passed."""

    plain: dict[str, Any] = field(default_factory=dict)
    encrypted: dict[str, str] = field(default_factory=dict)
    refresh_token: str | None = None
    clear_client_certificate: bool = False


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _check_file(value: str, field_name: str, what: str) -> str:
    path = check_file(value, field_name, what)
    if not os.access(path, os.R_OK):
        raise InvalidInputError(
            f"{what} {value!r} is not readable by the Postroom process",
            field=field_name,
        )
    return value


def check_endpoint(value: str, field_name: str) -> str:
    """Accept an https URL, or http only on a loopback address (for testing)."""
    value = check_single_line(value.strip(), field_name)
    parts = urlsplit(value)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return value
    if parts.scheme == "http" and _is_loopback(host):
        return value
    raise InvalidInputError(
        f"must be an https:// URL, for example "
        f"https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token; got {value!r}",
        field=field_name,
    )


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_client_identity(certificate_pem: str, key_pem: str) -> None:
    """Check that the PEM certificate chain and private key load and belong together."""
    try:
        chain = x509.load_pem_x509_certificates(certificate_pem.encode())
    except ValueError as exc:
        raise InvalidInputError(
            "is not a PEM certificate (-----BEGIN CERTIFICATE-----)",
            field="client_certificate",
        ) from exc
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(
            "is not an unencrypted PEM private key; remove its passphrase first, "
            "for example with `openssl pkey -in key.pem -out plain.pem`",
            field="client_key",
        ) from exc
    certificate_key = (
        chain[0]
        .public_key()
        .public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    private_public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if certificate_key != private_public:
        raise InvalidInputError(
            "does not belong to the client certificate; give the key the "
            "certificate was issued for",
            field="client_key",
        )


def _secret(value: SecretStr | None) -> str | None:
    if value is None:
        return None
    text = value.get_secret_value().strip()
    return text or None


def prepare(
    data: Any, state: dict[str, Any], profile: Profile | None, box: SecretBox
) -> AuthChanges:
    """Validate the auth fields of a ProfileInput against the profile's new state.

    ``state`` is the profile's normalized plain fields after the change;
    ``profile`` is the stored profile, or None when it is being created.
    """
    given = data.model_fields_set
    changes = AuthChanges()

    for name in ("kerberos_service_principal", "kerberos_keytab", "kerberos_config"):
        if name not in given:
            continue
        value = _blank_to_none(getattr(data, name))
        if value is not None:
            check_single_line(value, name)
            check_length(value, name, column_length(getattr(Profile, name)))
        changes.plain[name] = value
    principal = changes.plain.get("kerberos_service_principal")
    if principal is not None and not _SERVICE_PRINCIPAL.match(principal):
        raise InvalidInputError(
            "must look like smtp/mail.example.com or smtp/mail.example.com@EXAMPLE.COM",
            field="kerberos_service_principal",
        )
    if changes.plain.get("kerberos_keytab"):
        _check_file(changes.plain["kerberos_keytab"], "kerberos_keytab", "keytab file")
    if changes.plain.get("kerberos_config"):
        _check_file(
            changes.plain["kerberos_config"],
            "kerberos_config",
            "Kerberos configuration",
        )

    if "oauth_provider" in given:
        provider = data.oauth_provider
        changes.plain["oauth_provider"] = provider.value if provider else None
    if "oauth_authorization_endpoint" in given:
        value = _blank_to_none(data.oauth_authorization_endpoint)
        if value is not None:
            limit = column_length(Profile.oauth_authorization_endpoint)
            check_length(value, "oauth_authorization_endpoint", limit)
        changes.plain["oauth_authorization_endpoint"] = (
            check_endpoint(value, "oauth_authorization_endpoint") if value else None
        )
    for name in ("oauth_client_id", "oauth_token_endpoint", "oauth_scope"):
        if name not in given:
            continue
        value = _blank_to_none(getattr(data, name))
        if value is None:
            continue
        value = check_single_line(value, name)
        if name == "oauth_token_endpoint":
            value = check_endpoint(value, name)
        changes.encrypted[name] = value
    client_secret = _secret(data.oauth_client_secret)
    if client_secret is not None:
        changes.encrypted["oauth_client_secret"] = check_single_line(
            client_secret, "oauth_client_secret"
        )
    refresh_token = _secret(data.oauth_refresh_token)
    if refresh_token is not None:
        changes.refresh_token = check_single_line(refresh_token, "oauth_refresh_token")

    provider_value = changes.plain.get(
        "oauth_provider", profile.oauth_provider if profile else None
    )
    defaults = preset(provider_value)
    if defaults is not None:
        stored_endpoint = profile is not None and profile.oauth_token_endpoint_encrypted
        if "oauth_token_endpoint" not in changes.encrypted and not stored_endpoint:
            changes.encrypted["oauth_token_endpoint"] = defaults.token_endpoint
        stored_scope = profile is not None and profile.oauth_scope_encrypted
        if "oauth_scope" not in changes.encrypted and not stored_scope:
            changes.encrypted["oauth_scope"] = defaults.scope

    if state["mechanism"] == AuthMechanism.XOAUTH2:
        has_client_id = "oauth_client_id" in changes.encrypted or (
            profile is not None and profile.oauth_client_id_encrypted is not None
        )
        if not has_client_id:
            raise InvalidInputError(
                "is required for the XOAUTH2 auth mechanism; copy the application "
                "(client) id from the app registration at the provider",
                field="oauth_client_id",
            )
        has_endpoint = "oauth_token_endpoint" in changes.encrypted or (
            profile is not None and profile.oauth_token_endpoint_encrypted is not None
        )
        if not has_endpoint:
            raise InvalidInputError(
                "is required for the XOAUTH2 auth mechanism; set oauth_provider to "
                "microsoft or google, or give the provider's token endpoint",
                field="oauth_token_endpoint",
            )

    _prepare_client_identity(data, state, profile, changes)
    return changes


def _prepare_client_identity(
    data: Any, state: dict[str, Any], profile: Profile | None, changes: AuthChanges
) -> None:
    given = data.model_fields_set
    certificate = _blank_to_none(data.client_certificate)
    key = _secret(data.client_key)
    if data.clear_client_certificate:
        if certificate or key:
            raise InvalidInputError(
                "cannot be combined with a new client certificate",
                field="clear_client_certificate",
            )
        changes.clear_client_certificate = True
        return
    if "client_certificate" in given or "client_key" in given:
        if not certificate:
            raise InvalidInputError(
                "is required together with client_key", field="client_certificate"
            )
        if not key:
            raise InvalidInputError(
                "is required together with client_certificate; give the private key "
                "in PEM form",
                field="client_key",
            )
        check_client_identity(certificate, key)
        changes.encrypted["client_certificate"] = certificate
        changes.encrypted["client_key"] = key
    has_identity = "client_certificate" in changes.encrypted or (
        profile is not None and profile.client_certificate_encrypted is not None
    )
    if has_identity and state["security"] == Security.NONE:
        raise InvalidInputError(
            "a client certificate needs TLS; set security to starttls or tls",
            field="security",
        )


def apply(
    session: Session, box: SecretBox, profile: Profile, changes: AuthChanges
) -> None:
    """Store validated changes; call after the profile row exists."""
    for name, value in changes.plain.items():
        setattr(profile, name, value)
    for name, value in changes.encrypted.items():
        setattr(profile, f"{name}_encrypted", box.encrypt(value))
    if changes.clear_client_certificate:
        profile.client_certificate_encrypted = None
        profile.client_key_encrypted = None
    if changes.refresh_token is not None:
        session.flush()
        store_refresh_token(session, box, profile.id, changes.refresh_token)


def store_refresh_token(
    session: Session,
    box: SecretBox,
    profile_id: int,
    refresh_token: str,
    *,
    expires_at: datetime | None = None,
    access_token: str | None = None,
    access_expires_at: datetime | None = None,
) -> OAuthGrant:
    """Save a newly connected grant, replacing the old one and its failure."""
    grant = session.get(OAuthGrant, profile_id)
    if grant is None:
        grant = OAuthGrant(profile_id=profile_id)
        session.add(grant)
    now = utcnow()
    grant.refresh_token_encrypted = box.encrypt(refresh_token)
    grant.refresh_token_expires_at = expires_at
    grant.access_token_encrypted = box.encrypt(access_token) if access_token else None
    grant.access_token_expires_at = access_expires_at if access_token else None
    grant.connected_at = now
    grant.refreshed_at = now if access_token else None
    grant.failed_at = None
    grant.failure_error = None
    grant.failure_description = None
    grant.failure_status = None
    grant.alerted = False
    return grant


def oauth_status(profile: Profile) -> OAuthStatus | None:
    """Return the OAuth state for an XOAUTH2 profile, or None for other profiles."""
    configured = profile.oauth_client_id_encrypted is not None
    if profile.mechanism != AuthMechanism.XOAUTH2 and not configured:
        return None
    session = object_session(profile)
    grant = session.get(OAuthGrant, profile.id) if session is not None else None
    defaults = preset(profile.oauth_provider)
    return OAuthStatus(
        provider=profile.oauth_provider,
        authorization_endpoint=profile.oauth_authorization_endpoint
        or (defaults.authorization_endpoint if defaults else None),
        has_client_id=configured,
        has_client_secret=profile.oauth_client_secret_encrypted is not None,
        has_refresh_token=grant is not None
        and grant.refresh_token_encrypted is not None,
        connected_at=grant.connected_at if grant else None,
        access_token_expires_at=grant.access_token_expires_at if grant else None,
        refresh_token_expires_at=grant.refresh_token_expires_at if grant else None,
        refreshed_at=grant.refreshed_at if grant else None,
        failed_at=grant.failed_at if grant else None,
        error=grant.failure_error if grant else None,
        error_description=grant.failure_description if grant else None,
    )


def warnings(profile: Profile, status: OAuthStatus | None) -> list[str]:
    """Say what needs an operator's attention before mail stops."""
    found: list[str] = []
    if profile.security == "none" and profile.login:
        found.append(
            "security is none, so the login and password cross the network in "
            "plain text; set security to starttls or tls unless the server is on a "
            "trusted network"
        )
    if status is None or profile.mechanism != AuthMechanism.XOAUTH2:
        return found
    command = f"postroom profile oauth connect {profile.name}"
    reconnect = f"reconnect the account ({command})"
    if not status.has_refresh_token:
        found.append(f"OAuth is not connected yet: connect the account ({command})")
    if status.failed_at is not None:
        reason = status.error or "error"
        if status.error_description:
            reason += f": {status.error_description}"
        found.append(f"the last OAuth token refresh failed ({reason}); {reconnect}")
    expires = status.refresh_token_expires_at
    if expires is not None and status.failed_at is None:
        remaining = expires - utcnow()
        if remaining <= timedelta(0):
            found.append(
                f"the OAuth refresh token expired at {expires.isoformat()}; {reconnect}"
            )
        elif remaining <= REFRESH_TOKEN_WARNING:
            found.append(
                f"the OAuth refresh token expires at {expires.isoformat()} "
                f"(in {_days(remaining)}); {reconnect} before then"
            )
    return found


def _days(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    if hours < 48:
        return f"{hours} hours"
    return f"{hours // 24} days"


def view_values(profile: Profile) -> dict[str, Any]:
    """Return the computed fields of ProfileView for these mechanisms."""
    # NOTE: the view has no key to decrypt the client certificate, so its
    # subject and expiry are not shown and an expired one is found only when
    # the relay rejects it.
    status = oauth_status(profile)
    return {
        "oauth": status,
        "has_client_certificate": profile.client_certificate_encrypted is not None,
        "warnings": warnings(profile, status),
    }


VIEW_FIELDS = ("oauth", "has_client_certificate", "warnings")
