"""SMTP replies: the reply code, the enhanced status code and the text."""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 3463: class.subject.detail, where class is 2, 4 or 5, subject has one
# to three digits and detail one to three. Servers put it at the start of
# the text, and on multi-line replies at the start of each line.
_ENHANCED_STATUS = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?=\s|$)")

# Queue ids as providers print them after DATA, for example Postfix
# "250 2.0.0 Ok: queued as 4Fq1Xb0v2Kz9", Exchange "250 2.6.0 <id> [InternalId=...]
# Queued mail for delivery", Gmail "250 2.0.0 OK  1700000000 a1-2b3c.42 - gsmtp".
_QUEUE_ID_PATTERNS = (
    re.compile(r"queued as ([A-Za-z0-9._\-]+)", re.IGNORECASE),
    re.compile(r"\bid=([A-Za-z0-9._\-]+)", re.IGNORECASE),
    re.compile(r"InternalId=(\d+)"),
    re.compile(r"^OK\s+\d+\s+(\S+)\s+-\s+gsmtp", re.IGNORECASE),
)

# C0 and C1 control characters (tab excepted) and the Unicode line and
# paragraph separators: a server could use them to end or overwrite a line
# where its text is shown, stored or logged.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES = {"\r": "\\r", "\n": "\\n"}


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    @property
    def enhanced_status(self) -> str | None:
        return parse_enhanced_status(self.text)

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


def is_standard_reply_code(code: int) -> bool:
    """Tell whether ``code`` is an SMTP reply code: three digits starting with 2 to 5.

    RFC 5321 (4.2) defines only the classes 2yz to 5yz; anything else, such
    as 999, is a peer that does not speak SMTP correctly.
    """
    return 200 <= code <= 599


def printable(text: str) -> str:
    """Escape control characters in ``text`` as ``\\r``, ``\\n`` or ``\\xNN``.

    Escaping twice changes nothing, since the escapes are printable.
    """
    # Nearly every reply is printable text, and isprintable() is false for
    # every character _CONTROL matches.
    if text.isprintable():
        return text
    return _CONTROL.sub(_escape, text)


def printable_reply(text: str) -> str:
    """Escape control characters in each line of a reply, keeping the line breaks.

    A multi-line reply is stored as its lines joined by LF; any other control
    character, a CR inside a line included, is escaped.
    """
    if text.isprintable():
        return text
    return "\n".join(printable(line) for line in text.split("\n"))


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    named = _NAMED_ESCAPES.get(character)
    if named is not None:
        return named
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def parse_enhanced_status(text: str) -> str | None:
    match = _ENHANCED_STATUS.match(text.strip())
    return match.group(1) if match else None


def text_without_status(text: str) -> str:
    """Drop the leading enhanced status code, if any, from reply text."""
    return _ENHANCED_STATUS.sub("", text.strip(), count=1).strip()


MAX_QUEUE_ID_LENGTH = 200


def parse_queue_id(text: str) -> str | None:
    """Find the provider's queue id in the reply to DATA, if it gives one."""
    body = text_without_status(text)
    for pattern in _QUEUE_ID_PATTERNS:
        match = pattern.search(body)
        if match:
            # The column holds 200 characters; no real queue id comes near.
            return match.group(1).strip("<>")[:MAX_QUEUE_ID_LENGTH]
    return None
