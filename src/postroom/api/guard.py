"""Checks made before a request body is read: its size and the bearer token.

FastAPI reads and parses a body before the route's dependencies run, so
the token dependency alone let a caller without a token make the server
read a body of any size, and see JSON parser errors. This pure ASGI
middleware runs first:

- a declared Content-Length over the limit gets 413 before anything is read;
- a request under ``/api/`` (except ``/api/health``) without a valid bearer
  token gets 401, and its body is never read;
- a body sent without a length (chunked) is counted as it streams, and
  gets 413 once it passes the limit, so at most the limit is held.

The route dependency still checks the token as well.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from fastapi.security.utils import get_authorization_scheme_param
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postroom.api.deps import INVALID_TOKEN, MISSING_TOKEN
from postroom.domain.db import transaction
from postroom.domain.tokens import verify_token
from postroom.runtime import Runtime

# Paths under /api that need no token.
_OPEN_API_PATHS = frozenset({"/api/health"})


def needs_token(path: str) -> bool:
    return (path == "/api" or path.startswith("/api/")) and path not in _OPEN_API_PATHS


def _too_large_detail(limit: int) -> list[dict[str, Any]]:
    return [
        {
            "loc": ["body"],
            "msg": f"the request body is larger than the limit of {limit:,} bytes; "
            "send less, or raise POSTROOM_MAX_REQUEST_BYTES",
            "type": "too_large",
        }
    ]


class RequestBodyTooLarge(HTTPException):
    """A streamed body passed the limit; FastAPI routes turn it into a 413 response."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_too_large_detail(limit))


class RequestGuard:
    """Reject oversized bodies and API calls without a token before reading a body."""

    def __init__(self, app: ASGIApp, *, runtime: Runtime, max_body_bytes: int) -> None:
        self.app = app
        self.runtime = runtime
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)

        declared = _content_length(headers)
        if declared is not None and declared > self.max_body_bytes:
            response = JSONResponse(
                {"detail": _too_large_detail(self.max_body_bytes)}, status_code=413
            )
            await response(scope, receive, send)
            return

        if needs_token(scope["path"]):
            problem = await run_in_threadpool(
                self._token_problem, headers.get("authorization")
            )
            if problem is not None:
                # The same shape as every other error answer.
                detail = [
                    {
                        "loc": ["header", "Authorization"],
                        "msg": problem,
                        "type": "unauthorized",
                    }
                ]
                response = JSONResponse(
                    {"detail": detail},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return

        await self._call_counting(scope, receive, send)

    def _token_problem(self, authorization: str | None) -> str | None:
        """Return why the Authorization header is not accepted, or None."""
        scheme, credentials = get_authorization_scheme_param(authorization)
        if not credentials or scheme.lower() != "bearer":
            return MISSING_TOKEN
        with transaction(self.runtime.sessions) as session:
            if verify_token(session, credentials) is None:
                return INVALID_TOKEN
        return None

    async def _call_counting(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_body_bytes
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestBodyTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except RequestBodyTooLarge as exc:
            # FastAPI routes send the 413 themselves; this covers anything else
            # that reads the body.
            if response_started:
                raise
            response = JSONResponse({"detail": exc.detail}, status_code=413)
            await response(scope, receive, send)


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)
