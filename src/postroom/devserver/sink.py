"""A development SMTP server that accepts mail and stores it in a folder.

It replaces a provider on 127.0.0.1. Each message is written to
``<folder>/<id>.eml`` exactly as received, with a line in
``<folder>/index.jsonl`` for the envelope. The reply to DATA is
``250 2.0.0 OK queued as <id>``, the way real providers report their queue id.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    auth_mechanism,
)


@dataclass
class ReceivedMessage:
    id: str
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    received_at: float
    login: str | None = None

    @property
    def headers(self) -> Any:
        return BytesHeaderParser(policy=default_policy).parsebytes(self.content)


@dataclass
class SinkHandler:
    """aiosmtpd handler: stores messages, optionally in a folder."""

    folder: Path | None = None
    users: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before replying to DATA, to imitate a provider's latency.
    data_delay: float = 0.0
    on_message: Callable[[ReceivedMessage], None] | None = None
    messages: list[ReceivedMessage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check_login(self, login: str, password: str) -> bool:
        expected = self.users.get(login)
        return expected is not None and hmac.compare_digest(
            expected.encode(), password.encode()
        )

    def authenticator(
        self,
        _server: SMTP,
        _session: Session,
        _envelope: Envelope,
        _mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            if self.check_login(login, password):
                return AuthResult(success=True, auth_data=login)
        # handled=False makes aiosmtpd send the 535 reply itself.
        return AuthResult(success=False, handled=False)

    @auth_mechanism("CRAM-MD5")
    async def auth_CRAM_MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) != 1:
            await server.push("501 5.5.2 CRAM-MD5 takes no initial response")
            return AuthResult(success=False, handled=True)
        challenge = (
            f"<{secrets.token_hex(8)}.{int(time.time())}@postroom-sink>".encode()
        )
        response = await server.challenge_auth(challenge)
        if response is MISSING:
            return AuthResult(success=False, handled=True)
        login, _, digest = bytes(response).partition(b" ")
        password = self.users.get(login.decode("utf-8", "replace"))
        if password is not None:
            expected = hmac.new(password.encode(), challenge, "md5").hexdigest()
            if hmac.compare_digest(expected.encode(), digest):
                return AuthResult(success=True, auth_data=login.decode())
        return AuthResult(success=False, handled=False)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # Offer PIPELINING as providers do, so deliveries to the sink take
        # the same path as to them. aiosmtpd reads one command line at a
        # time, so it serves pipelined commands in order already.
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        message_id = f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(4)}"
        content = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not envelope.original_content:
            content = envelope.content
        received = ReceivedMessage(
            id=message_id,
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            content=content,
            received_at=time.time(),
            login=session.auth_data if isinstance(session.auth_data, str) else None,
        )
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.folder is not None:
            await asyncio.to_thread(self._store, received)
        with self._lock:
            self.messages.append(received)
        if self.on_message is not None:
            self.on_message(received)
        return f"250 2.0.0 OK queued as {message_id}"

    def _store(self, received: ReceivedMessage) -> None:
        assert self.folder is not None
        (self.folder / f"{received.id}.eml").write_bytes(received.content)
        headers = received.headers
        entry = {
            "id": received.id,
            "received_at": received.received_at,
            "mail_from": received.mail_from,
            "rcpt_tos": received.rcpt_tos,
            "size": len(received.content),
            "message_id": headers.get("Message-ID"),
            "subject": headers.get("Subject"),
        }
        with self._lock, (self.folder / "index.jsonl").open("a") as index:
            index.write(json.dumps(entry) + "\n")


@dataclass
class SinkServer:
    """Runs a SinkHandler on a loopback port in a background thread."""

    handler: SinkHandler
    host: str = "127.0.0.1"
    port: int = 2525
    tls_context: ssl.SSLContext | None = None
    # True: TLS from the first byte (like port 465); False: STARTTLS offered.
    implicit_tls: bool = False
    _controller: Controller | None = None

    def start(self) -> None:
        handler = self.handler
        if self.port == 0:
            self.port = free_port(self.host)
        starttls_context = None if self.implicit_tls else self.tls_context
        smtp_kwargs: dict[str, Any] = {
            "ident": "Postroom sink",
            "tls_context": starttls_context,
            "enable_SMTPUTF8": True,
            "data_size_limit": 50 * 1024 * 1024,
        }
        if handler.users:
            smtp_kwargs["authenticator"] = handler.authenticator
            smtp_kwargs["auth_required"] = True
            # Over TLS, AUTH waits for it as real servers do; without a
            # certificate the sink allows AUTH in plain text (development only).
            smtp_kwargs["auth_require_tls"] = (
                self.tls_context is not None and not self.implicit_tls
            )
        self._controller = Controller(
            handler,
            hostname=self.host,
            port=self.port,
            ssl_context=self.tls_context if self.implicit_tls else None,
            server_hostname="postroom-sink",
            **smtp_kwargs,
        )
        # aiosmtpd warns on every connection when AUTH does not require TLS.
        # With implicit TLS the connection is encrypted before aiosmtpd sees
        # it; without a certificate the sink says so when it starts.
        warnings.filterwarnings(
            "ignore",
            message="Requiring AUTH while not requiring TLS",
            category=UserWarning,
        )
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        self._controller.start()
        self.port = self._controller.port

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (aiosmtpd cannot bind port 0)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context
