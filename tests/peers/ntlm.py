"""An SMTP server that accepts AUTH NTLM as Exchange does, with pyspnego.

pyspnego's acceptor has no domain controller: it checks the client against
the file named by the NTLM_USER_FILE environment variable, one
``DOMAIN:USER:PASSWORD`` per line, matching the domain exactly. Its
challenge names the domain WORKSTATION; this server rewrites it to name
``domain`` the way a domain member's challenge does, so a client can tell
which domain the server belongs to.

Every failure gets Exchange's reply, 535 5.7.3 Authentication
unsuccessful, whatever the reason.
"""

from __future__ import annotations

import base64
import binascii
import typing
from dataclasses import dataclass, field

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, auth_mechanism
from spnego._ntlm import NTLMProxy
from spnego._ntlm_raw.messages import AvId, Challenge
from spnego.exceptions import SpnegoError

from postroom.devserver.sink import SinkHandler

REJECTED = "535 5.7.3 Authentication unsuccessful"


class _DomainAcceptor(NTLMProxy):  # type: ignore[misc]
    """pyspnego's NTLM acceptor with the server's domain in its challenge."""

    def __init__(self, domain: str, dns_domain: str) -> None:
        super().__init__(
            hostname="mail", service="smtp", usage="accept", protocol="ntlm"
        )
        self.domain = domain
        self.dns_domain = dns_domain

    def _step_accept_negotiate(self, token: bytes) -> bytes:
        original = Challenge.unpack(super()._step_accept_negotiate(token))
        info = original.target_info
        info[AvId.nb_domain_name] = self.domain
        info[AvId.dns_domain_name] = self.dns_domain
        challenge = Challenge(
            original.flags,
            original.server_challenge,
            target_name=self.domain,
            target_info=info,
            version=original.version,
        )
        # The acceptor checks the client's MIC over the challenge it sent.
        self._temp_challenge = challenge
        return typing.cast(bytes, challenge.pack())


@dataclass
class NtlmHandler(SinkHandler):
    domain: str = "CORP"
    dns_domain: str = "corp.example"
    # The identity pyspnego accepted, for each successful AUTH.
    principals: list[str] = field(default_factory=list)
    # Whether the NEGOTIATE_MESSAGE came on the AUTH line, per AUTH.
    initial_on_auth_line: list[bool] = field(default_factory=list)
    # Every NTLM message received, as the base64 sent on the wire.
    received_tokens: list[str] = field(default_factory=list)
    # Reject every login with a 535 that quotes both NTLM messages as they
    # came on the wire, the way some servers echo what they were sent.
    echo_rejection: bool = False

    @auth_mechanism("NTLM")
    async def auth_NTLM(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 2:
            self.initial_on_auth_line.append(True)
            try:
                negotiate = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        else:
            # MS-SMTPNTLM: without an initial response the server replies 334 with text.
            self.initial_on_auth_line.append(False)
            answer = await server.challenge_auth(b"NTLM supported", encode_to_b64=False)
            if answer is MISSING:
                return AuthResult(success=False, handled=True)
            negotiate = bytes(answer)

        acceptor = _DomainAcceptor(self.domain, self.dns_domain)
        try:
            challenge = acceptor.step(negotiate)
        except SpnegoError:
            return AuthResult(success=False, handled=False, message=REJECTED)
        authenticate = await server.challenge_auth(challenge)
        if authenticate is MISSING:
            return AuthResult(success=False, handled=True)
        self.received_tokens.append(base64.b64encode(negotiate).decode())
        self.received_tokens.append(base64.b64encode(bytes(authenticate)).decode())
        if self.echo_rejection:
            return AuthResult(
                success=False,
                handled=False,
                message="535 5.7.8 Authentication failed for "
                + " ".join(self.received_tokens[-2:]),
            )
        try:
            acceptor.step(bytes(authenticate))
        except SpnegoError:
            return AuthResult(success=False, handled=False, message=REJECTED)
        if not acceptor.complete:
            return AuthResult(success=False, handled=False, message=REJECTED)
        principal = str(acceptor.client_principal)
        self.principals.append(principal)
        return AuthResult(success=True, auth_data=principal)


def write_user_file(path: str, users: list[tuple[str, str, str]]) -> str:
    """Write ``(domain, user, password)`` lines in the NTLM_USER_FILE format."""
    with open(path, "w") as stream:
        for domain, user, password in users:
            stream.write(f"{domain}:{user}:{password}\n")
    return path
