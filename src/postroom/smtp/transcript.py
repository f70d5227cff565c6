"""A record of the SMTP dialogue with every secret removed.

The AUTH exchange is replaced by placeholders as it is recorded: the
initial response, each client line after a 334 and each 334 challenge.
As a second guard, the session's secrets and their base64 forms are masked
wherever they would still appear.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

from postroom.smtp.replies import printable

AUTH_HIDDEN = "[AUTH data hidden]"
SECRET_HIDDEN = "[secret hidden]"


def secret_forms(secret: str) -> list[str]:
    """Return a secret and its base64 form, the shapes it takes on the wire."""
    forms = {secret, base64.b64encode(secret.encode()).decode()}
    return [form for form in forms if len(form) >= 3]


def mask_secrets(text: str, secrets: list[str]) -> str:
    # Longest first: a shorter secret inside a longer one must not break the
    # longer one's match.
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, SECRET_HIDDEN)
    return text


@dataclass
class TranscriptLine:
    # Seconds since the transcript started.
    at: float
    # "C" for what the client sent, "S" for what the server sent, "*" for
    # events such as a TLS handshake or a timeout.
    direction: str
    text: str

    def render(self) -> str:
        return f"{self.at:8.3f} {self.direction}: {self.text}"


@dataclass
class Transcript:
    lines: list[TranscriptLine] = field(default_factory=list)
    _secrets: list[str] = field(default_factory=list, repr=False)
    _started: float = field(default_factory=time.monotonic, repr=False)
    _in_auth: bool = field(default=False, repr=False)

    def add_secret(self, secret: str | None) -> None:
        if not secret:
            return
        self._secrets.extend(secret_forms(secret))

    def _mask(self, text: str) -> str:
        return mask_secrets(text, self._secrets)

    def _add(self, direction: str, text: str) -> None:
        at = time.monotonic() - self._started
        # Each entry is one line: control characters the server sent, or
        # that an error message quotes, are escaped.
        self.lines.append(TranscriptLine(at, direction, printable(self._mask(text))))

    def client(self, *args: bytes) -> None:
        verb = args[0].upper() if args else b""
        if verb == b"AUTH":
            mechanism = args[1].decode("ascii", "replace") if len(args) > 1 else ""
            text = f"AUTH {mechanism}"
            if len(args) > 2:
                text += f" {AUTH_HIDDEN}"
            self._in_auth = True
            self._add("C", text)
        elif self._in_auth:
            self._add("C", AUTH_HIDDEN)
        else:
            self._add("C", b" ".join(args).decode("utf-8", "replace"))

    def server(self, code: int, text: str) -> None:
        if self._in_auth:
            if code == 334:
                self._add("S", f"334 {AUTH_HIDDEN}")
                return
            self._in_auth = False
        lines = text.split("\n") if text else [""]
        for index, line in enumerate(lines):
            separator = "-" if index < len(lines) - 1 else " "
            self._add("S", f"{code}{separator}{line}".rstrip())

    def event(self, text: str) -> None:
        self._add("*", text)

    def render(self) -> list[str]:
        return [line.render() for line in self.lines]

    def as_dicts(self) -> list[dict[str, object]]:
        return [
            {"at": round(line.at, 4), "direction": line.direction, "text": line.text}
            for line in self.lines
        ]
