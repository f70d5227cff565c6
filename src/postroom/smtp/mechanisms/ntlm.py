"""SASL NTLM as Microsoft's SMTP NTLM extension ([MS-SMTPNTLM]) describes it.

C: AUTH NTLM <NEGOTIATE_MESSAGE>, S: 334 <CHALLENGE_MESSAGE>,
C: <AUTHENTICATE_MESSAGE>, S: 235 or 535. The messages come from pyspnego's
own NTLM code; ``NegotiateOptions.use_ntlm`` keeps pyspnego from routing
NTLM through GSSAPI when python-gssapi is installed.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

import aiosmtplib
import spnego
from spnego.exceptions import SpnegoError

from postroom.smtp.errors import ErrorKind, SmtpFailure, Step
from postroom.smtp.mechanisms import exchange
from postroom.smtp.replies import Reply
from postroom.smtp.settings import ConnectionSettings

# pyspnego logs every NTLM message at DEBUG ("NTLM step input/output"), and
# the AUTHENTICATE_MESSAGE carries the NTLMv2 response, from which the
# password can be attacked offline. Keep its loggers above DEBUG.
logging.getLogger("spnego").setLevel(logging.INFO)

_SIGNATURE = b"NTLMSSP\x00"
_CHALLENGE_TYPE = 2
# AV_PAIR ids of MS-NLMP 2.2.2.1 that name the server and its domain.
_AV_EOL = 0
_AV_NB_COMPUTER = 1
_AV_NB_DOMAIN = 2
_AV_DNS_COMPUTER = 3
_AV_DNS_DOMAIN = 4


@dataclass(frozen=True)
class NtlmLogin:
    """A login split the way NTLM sends it: domain and user name."""

    domain: str
    user: str

    @property
    def spnego_username(self) -> str:
        return f"{self.domain}\\{self.user}" if self.domain else self.user


def split_login(login: str) -> NtlmLogin:
    """Split ``DOMAIN\\user``; ``user@domain`` and a bare user have no domain.

    A user principal name goes whole in the user field with an empty domain
    field, and the server looks the account up by that name.
    """
    domain, separator, user = login.partition("\\")
    if not separator:
        return NtlmLogin("", login)
    return NtlmLogin(domain, user)


@dataclass(frozen=True)
class ServerNames:
    """The server names an NTLM CHALLENGE_MESSAGE carries (MS-NLMP 2.2.1.2)."""

    netbios_domain: str | None = None
    dns_domain: str | None = None
    netbios_computer: str | None = None
    dns_computer: str | None = None

    def accepts_domain(self, domain: str) -> bool:
        """Tell whether ``domain`` names the server's domain or the server itself.

        A computer name stands for the server's local accounts.
        """
        names = (
            self.netbios_domain,
            self.dns_domain,
            self.netbios_computer,
            self.dns_computer,
        )
        return domain.upper() in {name.upper() for name in names if name}


def parse_challenge(token: bytes) -> ServerNames | None:
    """Read the server's names from a CHALLENGE_MESSAGE, or None if it is not one."""
    if len(token) < 48 or not token.startswith(_SIGNATURE):
        return None
    (message_type,) = struct.unpack_from("<I", token, 8)
    if message_type != _CHALLENGE_TYPE:
        return None
    length, _max_length, offset = struct.unpack_from("<HHI", token, 40)
    info = token[offset : offset + length]
    names: dict[int, str] = {}
    position = 0
    while position + 4 <= len(info):
        av_id, av_length = struct.unpack_from("<HH", info, position)
        position += 4
        if av_id == _AV_EOL:
            break
        value = info[position : position + av_length]
        position += av_length
        if av_id in (_AV_NB_COMPUTER, _AV_NB_DOMAIN, _AV_DNS_COMPUTER, _AV_DNS_DOMAIN):
            names[av_id] = value.decode("utf-16-le", "replace")
    return ServerNames(
        netbios_domain=names.get(_AV_NB_DOMAIN),
        dns_domain=names.get(_AV_DNS_DOMAIN),
        netbios_computer=names.get(_AV_NB_COMPUTER),
        dns_computer=names.get(_AV_DNS_COMPUTER),
    )


def _client_failure(error: str, **details: object) -> SmtpFailure:
    return SmtpFailure(
        step=Step.AUTH, kind=ErrorKind.AUTH_CLIENT, error=error, details=dict(details)
    )


async def authenticate(
    client: aiosmtplib.SMTP, settings: ConnectionSettings, _name: str
) -> Reply:
    login = split_login(settings.login or "")
    context = spnego.client(
        login.spnego_username,
        settings.password or "",
        hostname=settings.host,
        service="smtp",
        protocol="ntlm",
        options=spnego.NegotiateOptions.use_ntlm,
    )
    negotiate = context.step()
    assert negotiate is not None

    # MS-SMTPNTLM 3.1.4.1: the NEGOTIATE_MESSAGE should be the initial response.
    reply = await exchange.begin(client, "NTLM", negotiate)
    if reply.code != 334:
        raise SmtpFailure.from_reply(Step.AUTH, reply)
    token = exchange.challenge(reply)
    server = parse_challenge(token)
    if server is None:
        raise SmtpFailure(
            step=Step.AUTH,
            kind=ErrorKind.PROTOCOL,
            error="the server's answer to AUTH NTLM is not an NTLM challenge",
        )
    try:
        authenticate_message = context.step(token)
    except SpnegoError as exc:
        raise _client_failure(f"the server's NTLM challenge is invalid: {exc}") from exc
    assert authenticate_message is not None

    reply = await exchange.respond(client, authenticate_message)
    if reply.code == 235:
        return reply
    details: dict[str, object] = {"ntlm_user": login.user}
    if login.domain:
        details["ntlm_login_domain"] = login.domain
    if server.netbios_domain:
        details["ntlm_server_domain"] = server.netbios_domain
    # A login that names a domain the server does not belong to is the
    # usual reason a right password is rejected, so the diagnosis names it.
    details["ntlm_domain_mismatch"] = bool(
        login.domain
        and server.netbios_domain
        and not server.accepts_domain(login.domain)
    )
    raise SmtpFailure.from_reply(Step.AUTH, reply, **details)
