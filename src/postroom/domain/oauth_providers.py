"""OAuth 2.0 endpoints and scopes of the providers Postroom knows.

A profile may override every value; a custom provider has no defaults.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class OAuthProvider(enum.StrEnum):
    MICROSOFT = "microsoft"
    GOOGLE = "google"
    CUSTOM = "custom"


@dataclass(frozen=True)
class ProviderPreset:
    label: str
    authorization_endpoint: str
    token_endpoint: str
    scope: str
    # Extra query parameters of the authorization request.
    authorization_parameters: dict[str, str] = field(default_factory=dict)


PRESETS: dict[OAuthProvider, ProviderPreset] = {
    # "organizations" accepts work and school accounts of any tenant; a
    # profile can name its own tenant by overriding both endpoints.
    # offline_access is the scope that makes Microsoft issue a refresh token.
    OAuthProvider.MICROSOFT: ProviderPreset(
        label="Microsoft 365",
        authorization_endpoint=(
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize"
        ),
        token_endpoint="https://login.microsoftonline.com/organizations/oauth2/v2.0/token",
        scope="https://outlook.office.com/SMTP.Send offline_access",
    ),
    # Google issues a refresh token only with access_type=offline, and again
    # on a later consent only with prompt=consent.
    OAuthProvider.GOOGLE: ProviderPreset(
        label="Google",
        authorization_endpoint="https://accounts.google.com/o/oauth2/v2/auth",
        token_endpoint="https://oauth2.googleapis.com/token",
        scope="https://mail.google.com/",
        authorization_parameters={"access_type": "offline", "prompt": "consent"},
    ),
}


def preset(provider: str | None) -> ProviderPreset | None:
    if provider is None:
        return None
    try:
        return PRESETS.get(OAuthProvider(provider))
    except ValueError:
        return None


def provider_label(provider: str | None) -> str:
    found = preset(provider)
    return found.label if found else "the OAuth provider"
