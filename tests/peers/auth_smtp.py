"""aiosmtpd servers that offer one SASL mechanism and store what they receive.

The handlers extend the development sink's handler, so a received message
records the identity the mechanism authenticated. ``AuthServer`` runs one on
a loopback port, with room for Kerberos-sized AUTH lines when asked.
"""

from __future__ import annotations

import collections
import logging
import ssl
import warnings
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from postroom.devserver.sink import SinkHandler, free_port

# Kerberos tickets make AUTH lines and responses to 334 far longer than
# aiosmtpd's limits of 512 octets per command and 1001 per line.
LONG_LINE = 16384


class _LongLineSMTP(SMTP):
    line_length_limit = LONG_LINE

    def __init__(self, *args: Any, auth_line_limit: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # aiosmtpd keeps this dict on the class; each session gets its own.
        self.command_size_limits = collections.defaultdict(
            lambda: SMTP.command_size_limit
        )
        self.command_size_limits["AUTH"] = auth_line_limit


class _Controller(Controller):
    def __init__(self, *args: Any, auth_line_limit: int, **kwargs: Any) -> None:
        self.auth_line_limit = auth_line_limit
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:
        return _LongLineSMTP(
            self.handler, auth_line_limit=self.auth_line_limit, **self.SMTP_kwargs
        )


@dataclass
class AuthServer:
    """Runs ``handler`` offering only its own AUTH mechanisms, AUTH required.

    ``auth_line_limit`` caps the AUTH command line; responses to 334
    challenges may always be long. ``tls_context`` with ``implicit_tls``
    false offers STARTTLS.
    """

    handler: SinkHandler
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False
    auth_line_limit: int = LONG_LINE
    host: str = "127.0.0.1"
    port: int = 0
    _controller: Controller | None = None

    def start(self) -> AuthServer:
        self.port = free_port(self.host)
        warnings.filterwarnings(
            "ignore", message="Requiring AUTH while not requiring TLS"
        )
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        self._controller = _Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            auth_line_limit=self.auth_line_limit,
            ssl_context=self.tls_context if self.implicit_tls else None,
            server_hostname="localhost",
            tls_context=None if self.implicit_tls else self.tls_context,
            auth_required=True,
            auth_require_tls=False,
            auth_exclude_mechanism=["PLAIN", "LOGIN", "CRAM-MD5"],
            ident="Postroom test server",
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
