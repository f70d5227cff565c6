"""aiosmtplib's client with the dialogue copied to a transcript, secrets hidden.

Every line the client sends during an AUTH exchange (the initial response
and each answer to a 334 challenge, for every mechanism) is a credential or
is derived from one, and a server may echo it in a reply. Each such line
becomes a secret of the session before it is sent, so the session masks it
in every reply, error and transcript line that follows.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Literal

import aiosmtplib
from aiosmtplib.typing import Default

from postroom.smtp.replies import printable
from postroom.smtp.transcript import Transcript


class RecordingSMTP(aiosmtplib.SMTP):
    """aiosmtplib's client with every command and reply copied to a transcript."""

    transcript: Transcript | None = None
    # Called with each secret that appears only during AUTH: an access token,
    # or a line the client sends in the AUTH exchange.
    on_secret: Callable[[str], None] | None = None
    # The login is not a secret: its decoded form stays visible.
    login_name: str | None = None
    # The bytes of a reply that had begun but not ended when the connection
    # closed, such as the "220-" lines of a greeting that never ends.
    unfinished_reply: bytes = b""
    _in_auth: bool = False

    async def execute_command(
        self,
        *args: bytes,
        timeout: float | Literal[Default.token] | None = Default.token,
    ) -> aiosmtplib.SMTPResponse:
        self._note_auth_lines(args)
        if self.transcript is not None:
            self.transcript.client(*args)
        try:
            response = await super().execute_command(*args, timeout=timeout)
        except aiosmtplib.SMTPException as exc:
            if self.transcript is not None:
                self.transcript.event(f"no reply: {exc}")
            raise
        if self._in_auth and response.code != 334:
            # RFC 4954: any reply other than 334 ends the exchange.
            self._in_auth = False
        if self.transcript is not None:
            self.transcript.server(response.code, response.message)
        return response

    def _note_auth_lines(self, args: tuple[bytes, ...]) -> None:
        verb = args[0].upper() if args else b""
        if verb == b"AUTH":
            self._in_auth = True
            lines = args[2:]
        elif self._in_auth:
            lines = (b" ".join(args),)
        else:
            return
        if self.on_secret is None:
            return
        for line in lines:
            sent = line.decode("ascii", "replace").strip()
            self.on_secret(sent)
            decoded = _decoded_text(sent)
            # A CRAM-MD5 answer decodes to "login digest", which a server may
            # echo decoded; a LOGIN user name decodes to the login, which must
            # stay readable in MAIL FROM and the replies.
            if decoded and decoded != self.login_name:
                self.on_secret(decoded)

    def close(self) -> None:
        protocol = self.protocol
        if protocol is not None:
            # aiosmtplib keeps the lines of a reply it has not finished
            # reading in the protocol's buffer, which closing discards.
            # NOTE: _buffer is private to aiosmtplib (5.1); without it the
            # greeting is reported as missing instead of unfinished.
            self.unfinished_reply = bytes(getattr(protocol, "_buffer", b""))
        super().close()


def _decoded_text(line: str) -> str | None:
    """Return the base64 ``line`` decoded, when it is printable UTF-8 text."""
    try:
        text = base64.b64decode(line, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if not text.strip() or printable(text) != text:
        return None
    return text
