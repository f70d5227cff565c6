"""A local OAuth 2.0 provider: authorization page, token endpoint, bearer checks.

It issues, expires, rotates and revokes tokens the way Microsoft's and
Google's endpoints do, with their RFC 6749 error codes, and checks PKCE
(RFC 7636, S256) on the authorization-code grant. The XOAUTH2 test server
asks it whether a bearer token is valid for a mailbox.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"


@dataclass
class RefreshGrant:
    client_id: str
    user: str
    scope: str
    # Wall-clock expiry in seconds since the epoch, or None for no expiry.
    expires_at: float | None = None
    revoked: bool = False


@dataclass
class AccessGrant:
    user: str
    scope: str
    expires_at: float
    revoked: bool = False


@dataclass
class PendingCode:
    client_id: str
    redirect_uri: str
    code_challenge: str
    code_challenge_method: str
    scope: str
    user: str


@dataclass
class OAuthServer:
    # client_id -> client secret (None for a public client).
    clients: dict[str, str | None] = field(default_factory=dict)
    user: str = "orders@example.com"
    access_lifetime: int = 3600
    # When set, every refresh returns a new refresh token and kills the old.
    rotate: bool = False
    # An RFC 6749 error body every refresh gets instead of a token, to
    # imitate a provider's other refusals (invalid_scope and the like).
    refresh_error: dict[str, str] | None = None
    # Sent as refresh_token_expires_in with each new refresh token.
    refresh_token_lifetime: int | None = None
    access_token_length: int = 48
    # The scope each access token gets, unless the request asks for less.
    scope_granted: str | None = None
    host: str = "127.0.0.1"
    port: int = 0

    refresh_tokens: dict[str, RefreshGrant] = field(default_factory=dict)
    access_tokens: dict[str, AccessGrant] = field(default_factory=dict)
    codes: dict[str, PendingCode] = field(default_factory=dict)
    # Every token request's form, for assertions.
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/token"

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.base_url}/authorize"

    def refresh_count(self) -> int:
        return sum(
            1
            for form in self.token_requests
            if form.get("grant_type") == "refresh_token"
        )

    def issue_refresh_token(
        self, client_id: str, *, lifetime: float | None = None, scope: str = ""
    ) -> str:
        token = "rt-" + secrets.token_urlsafe(32)
        expires_at = time.time() + lifetime if lifetime is not None else None
        with self._lock:
            self.refresh_tokens[token] = RefreshGrant(
                client_id,
                self.user,
                scope or f"{SMTP_SCOPE} offline_access",
                expires_at,
            )
        return token

    def revoke(self, refresh_token: str) -> None:
        """Revoke a grant as withdrawn consent does: its access tokens die too."""
        with self._lock:
            grant = self.refresh_tokens[refresh_token]
            grant.revoked = True
            for access in self.access_tokens.values():
                if access.user == grant.user:
                    access.revoked = True

    def valid_access_token(
        self, token: str, user: str, scope: str = SMTP_SCOPE
    ) -> bool:
        with self._lock:
            grant = self.access_tokens.get(token)
            return (
                grant is not None
                and not grant.revoked
                and grant.expires_at > time.time()
                and grant.user == user
                and scope in grant.scope.split()
            )

    def start(self) -> OAuthServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner._get(self)

            def do_POST(self) -> None:
                owner._post(self)

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # HTTP handling.

    def _get(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        if parts.path == "/authorize":
            self._authorize_page(request, query)
        elif parts.path == "/authorize/decision":
            self._decision(request, query)
        else:
            _send(request, 404, "text/plain", b"not found")

    def _authorize_page(
        self, request: BaseHTTPRequestHandler, query: dict[str, str]
    ) -> None:
        if query.get("client_id") not in self.clients:
            _send(request, 400, "text/plain", b"unknown client_id")
            return
        accept = "/authorize/decision?" + urlencode({**query, "decision": "accept"})
        deny = "/authorize/decision?" + urlencode({**query, "decision": "deny"})
        page = f"""<!doctype html><html><head><title>Test provider sign-in</title></head>
<body><h1>Allow Postroom to send mail as {html.escape(self.user)}?</h1>
<p>Scope: {html.escape(query.get("scope", ""))}</p>
<a id="accept" href="{html.escape(accept)}">Accept</a>
<a id="deny" href="{html.escape(deny)}">Cancel</a></body></html>"""
        _send(request, 200, "text/html; charset=utf-8", page.encode())

    def _decision(self, request: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        redirect = query["redirect_uri"]
        state = query.get("state", "")
        if query.get("decision") != "accept":
            target = (
                redirect
                + "?"
                + urlencode(
                    {
                        "error": "access_denied",
                        "error_description": "The user declined to consent.",
                        "state": state,
                    }
                )
            )
        else:
            code = "code-" + secrets.token_urlsafe(16)
            with self._lock:
                self.codes[code] = PendingCode(
                    client_id=query["client_id"],
                    redirect_uri=redirect,
                    code_challenge=query.get("code_challenge", ""),
                    code_challenge_method=query.get("code_challenge_method", ""),
                    scope=query.get("scope", ""),
                    user=self.user,
                )
            target = redirect + "?" + urlencode({"code": code, "state": state})
        request.send_response(302)
        request.send_header("Location", target)
        request.end_headers()

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        if urlsplit(request.path).path != "/token":
            _send(request, 404, "text/plain", b"not found")
            return
        length = int(request.headers.get("Content-Length", "0"))
        body = request.rfile.read(length).decode()
        form = {key: values[0] for key, values in parse_qs(body).items()}
        with self._lock:
            self.token_requests.append(form)
        status, answer = self._token(form)
        _send(request, status, "application/json", json.dumps(answer).encode())

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        client_id = form.get("client_id", "")
        if client_id not in self.clients or self.clients[client_id] != form.get(
            "client_secret"
        ):
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
            }
        grant_type = form.get("grant_type")
        if grant_type == "refresh_token":
            return self._refresh(form, client_id)
        if grant_type == "authorization_code":
            return self._code(form, client_id)
        return 400, {"error": "unsupported_grant_type"}

    def _refresh(
        self, form: dict[str, str], client_id: str
    ) -> tuple[int, dict[str, Any]]:
        if self.refresh_error is not None:
            return 400, dict(self.refresh_error)
        with self._lock:
            grant = self.refresh_tokens.get(form.get("refresh_token", ""))
            if grant is None or grant.client_id != client_id:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "AADSTS9002313: Invalid request. The refresh "
                    "token is malformed or unknown.",
                }
            if grant.revoked:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "AADSTS50173: The provided grant has expired "
                    "due to it being revoked, a fresh auth token is needed.",
                }
            if grant.expires_at is not None and grant.expires_at <= time.time():
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "AADSTS700082: The refresh token has expired "
                    "due to inactivity.",
                }
            answer = self._access(grant.user, grant.scope)
            if self.rotate:
                grant.revoked = True
                answer.update(self._new_refresh(client_id, grant.user, grant.scope))
        return 200, answer

    def _code(self, form: dict[str, str], client_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            pending = self.codes.pop(form.get("code", ""), None)
            if pending is None or pending.client_id != client_id:
                return 400, {"error": "invalid_grant", "error_description": "bad code"}
            if pending.redirect_uri != form.get("redirect_uri"):
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "redirect_uri does not match",
                }
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if (
                pending.code_challenge_method != "S256"
                or expected != pending.code_challenge
            ):
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "PKCE code_verifier does not match",
                }
            answer = self._access(pending.user, pending.scope)
            answer.update(self._new_refresh(client_id, pending.user, pending.scope))
        return 200, answer

    def _access(self, user: str, scope: str) -> dict[str, Any]:
        length = self.access_token_length
        token = "at-" + secrets.token_urlsafe(length)[: max(length - 3, 8)]
        granted = self.scope_granted if self.scope_granted is not None else scope
        self.access_tokens[token] = AccessGrant(
            user, granted, time.time() + self.access_lifetime
        )
        return {
            "token_type": "Bearer",
            "access_token": token,
            "expires_in": self.access_lifetime,
            "scope": granted,
        }

    def _new_refresh(self, client_id: str, user: str, scope: str) -> dict[str, Any]:
        token = "rt-" + secrets.token_urlsafe(32)
        lifetime = self.refresh_token_lifetime
        self.refresh_tokens[token] = RefreshGrant(
            client_id, user, scope, time.time() + lifetime if lifetime else None
        )
        answer: dict[str, Any] = {"refresh_token": token}
        if lifetime:
            answer["refresh_token_expires_in"] = lifetime
        return answer


def _send(
    request: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes
) -> None:
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)
