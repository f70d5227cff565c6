"""SASL XOAUTH2, the bearer-token login of Google and Microsoft 365.

C: AUTH XOAUTH2 base64("user=" user ^A "auth=Bearer " token ^A ^A).
On success the server replies 235. On failure it sends a 334 challenge with
a base64 JSON error ({"status": "401", ...}), the client answers with an
empty line, and the server replies 535.

The access token comes from a token source that the profile's OAuth grant
provides, fetched when AUTH starts so that a cached token is used while it
is valid and refreshed shortly before it expires.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Protocol

import aiosmtplib

from postroom.smtp.errors import ErrorKind, SmtpFailure, Step
from postroom.smtp.mechanisms import exchange
from postroom.smtp.replies import Reply
from postroom.smtp.settings import ConnectionSettings


class AccessTokenError(Exception):
    """Getting an access token failed; carries the provider's error when it sent one."""

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        description: str | None = None,
        status: int | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error = error
        self.description = description
        self.status = status
        self.transient = transient


class AccessTokenSource(Protocol):
    """Where XOAUTH2 gets its bearer token; see postroom.oauth.tokens."""

    async def access_token(self, *, refresh: bool = False) -> tuple[str, bool]:
        """Return a token and whether it was just issued (not from a cache).

        ``refresh`` forces a new token even if the cached one is still valid.
        """
        ...


def initial_response(user: str, token: str) -> bytes:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def _error_status(reply: Reply) -> dict[str, Any]:
    try:
        decoded = json.loads(base64.b64decode(reply.text.strip(), validate=True))
    except (binascii.Error, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


async def _attempt(
    client: aiosmtplib.SMTP, user: str, token: str
) -> tuple[Reply, dict[str, Any]]:
    reply = await exchange.begin(client, "XOAUTH2", initial_response(user, token))
    error: dict[str, Any] = {}
    if reply.code == 334:
        error = _error_status(reply)
        # The empty answer ends the exchange so the server sends its reply.
        reply = await exchange.respond(client, b"")
    return reply, error


def _token_failure(exc: AccessTokenError) -> SmtpFailure:
    details: dict[str, Any] = {"oauth_transient": exc.transient}
    if exc.error:
        details["oauth_error"] = exc.error
    if exc.description:
        details["oauth_error_description"] = exc.description
    if exc.status is not None:
        details["oauth_http_status"] = exc.status
    return SmtpFailure(
        step=Step.AUTH, kind=ErrorKind.AUTH_CLIENT, error=exc.message, details=details
    )


async def _token(source: AccessTokenSource, refresh: bool) -> tuple[str, bool]:
    try:
        return await source.access_token(refresh=refresh)
    except AccessTokenError as exc:
        raise _token_failure(exc) from exc


async def authenticate(
    client: aiosmtplib.SMTP, settings: ConnectionSettings, _name: str
) -> Reply:
    source: AccessTokenSource | None = settings.mechanism_options.get("token_source")
    if source is None:
        raise SmtpFailure(
            step=Step.AUTH,
            kind=ErrorKind.AUTH_CLIENT,
            error="the profile has no OAuth token source",
            details={"oauth_error": "not_connected"},
        )
    user = settings.login or ""

    token, fresh = await _token(source, refresh=False)
    exchange.note_secret(client, token)
    reply, error = await _attempt(client, user, token)
    if reply.code == 235:
        return reply

    if not fresh and reply.code // 100 == 5:
        # The cached token may have been revoked before it expired: get a
        # new one and try once more on the same connection.
        token, _fresh = await _token(source, refresh=True)
        exchange.note_secret(client, token)
        reply, error = await _attempt(client, user, token)
        if reply.code == 235:
            return reply

    details: dict[str, Any] = {}
    if error:
        details["xoauth2_status"] = error.get("status")
        details["xoauth2_scope"] = error.get("scope")
    raise SmtpFailure.from_reply(Step.AUTH, reply, **details)
