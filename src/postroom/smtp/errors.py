"""The failure of an SMTP session, located at the step where it happened."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from postroom.smtp.replies import Reply, is_standard_reply_code, parse_enhanced_status


class Step(enum.StrEnum):
    """The steps of the SMTP dialogue, in the order a session walks them."""

    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL_FROM = "mail_from"
    RCPT_TO = "rcpt_to"
    DATA = "data"


class ErrorKind(enum.StrEnum):
    """What went wrong on the client side when there is no reply to show."""

    REPLY = "reply"  # the server replied with a code the step does not accept
    DNS = "dns"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    DISCONNECTED = "disconnected"
    TLS = "tls"
    CERTIFICATE = "certificate"
    NOT_OFFERED = "not_offered"  # an extension or mechanism the server lacks
    UNSUPPORTED = "unsupported"  # something this client cannot do yet
    TOO_LARGE = "too_large"  # larger than the SIZE the server announced
    AUTH_CLIENT = "auth_client"  # the SASL mechanism failed before a reply
    NETWORK = "network"
    # A local setting the client cannot use, such as an unreadable CA bundle.
    CONFIGURATION = "configuration"
    PROTOCOL = "protocol"  # the server sent something that is not SMTP


@dataclass
class SmtpFailure(Exception):
    """A session failed at ``step``; ``reply_code`` is None when no reply came."""

    step: Step
    kind: ErrorKind
    reply_code: int | None = None
    reply_text: str | None = None
    error: str | None = None
    # Facts the diagnosis needs: offered mechanisms, SIZE, TLS details.
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (
            self.kind is ErrorKind.REPLY
            and self.reply_code is not None
            and not is_standard_reply_code(self.reply_code)
        ):
            # A code outside 2yz to 5yz says nothing about success, retry or
            # refusal: the peer is not speaking SMTP as RFC 5321 defines it.
            self.kind = ErrorKind.PROTOCOL
            self.error = self.error or (
                f"the server replied with code {self.reply_code}, which is not an "
                "SMTP reply code: those start with 2, 3, 4 or 5"
            )
        super().__init__(str(self))

    @classmethod
    def from_reply(cls, step: Step, reply: Reply, **details: Any) -> SmtpFailure:
        return cls(
            step=step,
            kind=ErrorKind.REPLY,
            reply_code=reply.code,
            reply_text=reply.text,
            details=details,
        )

    @property
    def enhanced_status(self) -> str | None:
        return parse_enhanced_status(self.reply_text) if self.reply_text else None

    @property
    def is_transient(self) -> bool:
        """The plain SMTP rule; the diagnosis refines it per known case."""
        if self.reply_code is not None:
            return 400 <= self.reply_code < 500
        return self.kind in (
            ErrorKind.TIMEOUT,
            ErrorKind.DISCONNECTED,
            ErrorKind.NETWORK,
            ErrorKind.REFUSED,
            ErrorKind.DNS,
        )

    def __str__(self) -> str:
        if self.reply_code is not None:
            return f"{self.step}: {self.reply_code} {self.reply_text}"
        return f"{self.step}: {self.error or self.kind}"
