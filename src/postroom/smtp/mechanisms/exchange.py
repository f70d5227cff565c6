"""The SMTP AUTH dialogue of RFC 4954: initial response, 334 challenges, answers.

Every line goes through ``client.execute_command``, so the transcript sees
it and hides it (see ``postroom.smtp.transcript``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

import aiosmtplib

from postroom.smtp.errors import ErrorKind, SmtpFailure, Step
from postroom.smtp.replies import Reply

# RFC 5321, 4.5.3.1.4: a command line is at most 512 octets with its CRLF.
# RFC 4954, section 4: when the initial response would make AUTH longer,
# the client must leave it out and send it after the server's empty 334.
MAX_COMMAND_LINE = 512


def _reply(response: aiosmtplib.SMTPResponse) -> Reply:
    return Reply(response.code, response.message)


async def begin(client: aiosmtplib.SMTP, mechanism: str, initial: bytes) -> Reply:
    """Send AUTH with ``initial`` as the initial response, on the line if it fits."""
    name = mechanism.encode("ascii")
    # RFC 4954: an empty initial response is sent as "=".
    encoded = base64.b64encode(initial) if initial else b"="
    line_length = len(b"AUTH  \r\n") + len(name) + len(encoded)
    if line_length <= MAX_COMMAND_LINE:
        return _reply(await client.execute_command(b"AUTH", name, encoded))

    first = _reply(await client.execute_command(b"AUTH", name))
    if first.code != 334:
        return first
    return _reply(await client.execute_command(encoded))


async def respond(client: aiosmtplib.SMTP, data: bytes) -> Reply:
    """Answer a 334 challenge; empty ``data`` sends an empty line."""
    return _reply(await client.execute_command(base64.b64encode(data)))


def challenge(reply: Reply) -> bytes:
    """Decode the base64 data of a 334 challenge."""
    text = reply.text.strip()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SmtpFailure(
            step=Step.AUTH,
            kind=ErrorKind.PROTOCOL,
            error="the server's 334 challenge is not valid base64",
        ) from exc


def note_secret(client: aiosmtplib.SMTP, secret: str) -> None:
    """Tell the session about a secret found during AUTH, so it is masked."""
    on_secret: Callable[[str], None] | None = getattr(client, "on_secret", None)
    if on_secret is not None:
        on_secret(secret)
