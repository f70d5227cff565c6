"""SASL mechanisms for SMTP AUTH (RFC 4954), keyed by the profile's label.

Each mechanism drives the AUTH dialogue through ``client.execute_command``,
so every line passes through the transcript, which hides the exchange.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib.auth import auth_crammd5_verify, auth_login_encode, auth_plain_encode

from postroom.smtp.errors import ErrorKind, SmtpFailure, Step
from postroom.smtp.mechanisms import kerberos, ntlm, xoauth2
from postroom.smtp.replies import Reply
from postroom.smtp.settings import ConnectionSettings

Authenticator = Callable[[aiosmtplib.SMTP, ConnectionSettings, str], Awaitable[Reply]]


@dataclass(frozen=True)
class Mechanism:
    """A profile's auth mechanism and the SASL names that implement it."""

    label: str
    # SASL names this mechanism can use, in order of preference.
    sasl_names: tuple[str, ...]
    authenticate: Authenticator


def _reply(response: aiosmtplib.SMTPResponse) -> Reply:
    return Reply(response.code, response.message)


def _expect(response: aiosmtplib.SMTPResponse, code: int) -> Reply:
    reply = _reply(response)
    if reply.code != code:
        raise SmtpFailure.from_reply(Step.AUTH, reply)
    return reply


async def _plain(
    client: aiosmtplib.SMTP, settings: ConnectionSettings, _name: str
) -> Reply:
    encoded = auth_plain_encode(settings.login or "", settings.password or "")
    return _expect(await client.execute_command(b"AUTH", b"PLAIN", encoded), 235)


async def _login(
    client: aiosmtplib.SMTP, settings: ConnectionSettings, _name: str
) -> Reply:
    username, password = auth_login_encode(
        settings.login or "", settings.password or ""
    )
    # The user name goes in the initial response (RFC 4954 allows it for
    # LOGIN too, and every server that offers LOGIN accepts it).
    _expect(await client.execute_command(b"AUTH", b"LOGIN", username), 334)
    return _expect(await client.execute_command(password), 235)


async def _user_password(
    client: aiosmtplib.SMTP, settings: ConnectionSettings, name: str
) -> Reply:
    if name == "PLAIN":
        return await _plain(client, settings, name)
    return await _login(client, settings, name)


async def _cram_md5(
    client: aiosmtplib.SMTP, settings: ConnectionSettings, _name: str
) -> Reply:
    challenge = _expect(await client.execute_command(b"AUTH", b"CRAM-MD5"), 334)
    answer = auth_crammd5_verify(
        settings.login or "", settings.password or "", challenge.text
    )
    return _expect(await client.execute_command(answer), 235)


MECHANISMS: dict[str, Mechanism] = {
    "UserPassword": Mechanism("UserPassword", ("PLAIN", "LOGIN"), _user_password),
    "CRAM-MD5": Mechanism("CRAM-MD5", ("CRAM-MD5",), _cram_md5),
    "NTLM": Mechanism("NTLM", ("NTLM",), ntlm.authenticate),
    "Kerberos": Mechanism("Kerberos", ("GSSAPI",), kerberos.authenticate),
    "XOAUTH2": Mechanism("XOAUTH2", ("XOAUTH2",), xoauth2.authenticate),
}


def choose_sasl_name(mechanism: Mechanism, offered: Sequence[str]) -> str:
    """Pick the SASL name to use, or fail listing what the server offers."""
    offered_upper = [name.upper() for name in offered]
    for name in mechanism.sasl_names:
        if name in offered_upper:
            return name
    raise SmtpFailure(
        step=Step.AUTH,
        kind=ErrorKind.NOT_OFFERED,
        error=f"the server does not offer {' or '.join(mechanism.sasl_names)}",
        details={"mechanism": mechanism.label, "offered": offered_upper},
    )


async def authenticate(client: aiosmtplib.SMTP, settings: ConnectionSettings) -> Reply:
    mechanism = MECHANISMS.get(settings.mechanism)
    if mechanism is None:
        raise SmtpFailure(
            step=Step.AUTH,
            kind=ErrorKind.UNSUPPORTED,
            error=f"unknown auth mechanism {settings.mechanism!r}",
        )
    if not client.supports_extension("auth"):
        raise SmtpFailure(
            step=Step.AUTH,
            kind=ErrorKind.NOT_OFFERED,
            error="the server does not offer AUTH",
            details={"mechanism": mechanism.label, "offered": []},
        )
    offered = [name.upper() for name in client.server_auth_methods]
    name = choose_sasl_name(mechanism, offered)
    try:
        return await mechanism.authenticate(client, settings, name)
    except SmtpFailure as failure:
        failure.details.setdefault("mechanism", mechanism.label)
        failure.details.setdefault("sasl_name", name)
        failure.details.setdefault("offered", offered)
        raise
