"""What the transport needs to know to open a session with a server."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class ConnectionSettings:
    host: str
    port: int
    # "none", "starttls" or "tls" (implicit TLS).
    security: str
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    # The operator-facing label: UserPassword, CRAM-MD5, NTLM, Kerberos, XOAUTH2.
    mechanism: str = "UserPassword"
    ehlo_name: str | None = None
    ca_bundle: str | None = None
    connect_timeout: float = 30.0
    command_timeout: float = 60.0
    # Settings that only one SASL mechanism uses (a keytab, a token source).
    mechanism_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # A TLS client certificate chain and its private key, both PEM text.
    client_certificate: str | None = field(default=None, repr=False)
    client_key: str | None = field(default=None, repr=False)

    @property
    def secrets(self) -> list[str]:
        """Every secret value a transcript or log must never show."""
        values = [self.password] if self.password else []
        if self.client_key:
            values.append(self.client_key)
        for key, value in self.mechanism_options.items():
            if key.startswith("secret_") and isinstance(value, str) and value:
                values.append(value)
        return values


@lru_cache(maxsize=1)
def machine_fqdn() -> str | None:
    """Return this machine's fully qualified name, or None if it has no domain.

    Looked up once per process because the lookup can take seconds when DNS
    is slow.
    """
    name = socket.getfqdn()
    return name if "." in name else None


def address_literal(ip: str) -> str:
    """Format an IP address as an EHLO address literal (RFC 5321, 4.1.3)."""
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
