"""Requests to an OAuth 2.0 token endpoint (RFC 6749, sections 4.1.3 and 6).

The client authenticates with its secret in the request body
(client_secret_post), which Microsoft and Google both accept. A public
client without a secret sends only its client id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from postroom.smtp.mechanisms.xoauth2 import AccessTokenError

# Seconds for one token request.
TOKEN_TIMEOUT = 20.0


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    # Seconds the access token is valid, when the provider sends it.
    expires_in: int | None
    # Present when the provider rotates the refresh token or issues a first one.
    refresh_token: str | None
    refresh_token_expires_in: int | None
    scope: str | None


@dataclass(frozen=True)
class OAuthClient:
    token_endpoint: str
    client_id: str
    client_secret: str | None = None

    def refresh(self, refresh_token: str, scope: str | None) -> TokenResponse:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if scope:
            form["scope"] = scope
        return self._request(form)

    def exchange_code(
        self, code: str, redirect_uri: str, code_verifier: str
    ) -> TokenResponse:
        return self._request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            }
        )

    def _request(self, form: dict[str, str]) -> TokenResponse:
        form = {**form, "client_id": self.client_id}
        if self.client_secret:
            form["client_secret"] = self.client_secret
        try:
            response = httpx.post(
                self.token_endpoint,
                data=form,
                headers={"Accept": "application/json"},
                timeout=TOKEN_TIMEOUT,
            )
        except httpx.HTTPError as exc:
            raise AccessTokenError(
                f"the token endpoint {self.token_endpoint} cannot be reached: "
                f"{type(exc).__name__}: {exc}",
                error="unreachable",
                transient=True,
            ) from exc
        body = _json(response)
        if response.status_code != 200:
            raise _endpoint_error(self.token_endpoint, response.status_code, body)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise AccessTokenError(
                f"the token endpoint {self.token_endpoint} returned no access_token",
                error="invalid_response",
                status=response.status_code,
            )
        return TokenResponse(
            access_token=token,
            expires_in=_integer(body.get("expires_in")),
            refresh_token=body.get("refresh_token") or None,
            refresh_token_expires_in=_integer(body.get("refresh_token_expires_in")),
            scope=body.get("scope"),
        )


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# A lifetime beyond ten years is nonsense from a provider, and a far larger
# one would overflow the datetime arithmetic that turns it into an expiry.
_MAX_LIFETIME_SECONDS = 10 * 365 * 24 * 3600


def _integer(value: Any) -> int | None:
    # Some providers send numbers as strings ("3599").
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    if number <= 0:
        return None
    return min(number, _MAX_LIFETIME_SECONDS)


def _endpoint_error(
    endpoint: str, status: int, body: dict[str, Any]
) -> AccessTokenError:
    error = body.get("error")
    description = body.get("error_description")
    if not isinstance(error, str) or not error:
        error = f"http_{status}"
    message = f"the token endpoint {endpoint} rejected the request: {error}"
    if isinstance(description, str) and description:
        message += f": {description}"
    else:
        description = None
    return AccessTokenError(
        message,
        error=error,
        description=description,
        status=status,
        # RFC 6749 errors come with 400 or 401 and need someone to act; a
        # 5xx or a 429 is the provider's own trouble and passes.
        transient=status >= 500 or status == 429,
    )
