"""An SMTP server that accepts AUTH GSSAPI (RFC 4752) with python-gssapi.

The acceptor takes its key from a keytab file. After the context is
established the server sends its security-layer offer wrapped with
GSS_Wrap and checks the client's wrapped choice, as the RFC requires.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, auth_mechanism

from postroom.devserver.sink import SinkHandler

REJECTED = "535 5.7.8 Authentication credentials invalid"


@dataclass
class GssapiHandler(SinkHandler):
    keytab: str = ""
    # RFC 4752 bit mask of offered layers: 1 none, 2 integrity, 4 privacy.
    offered_layers: int = 0x01
    principals: list[str] = field(default_factory=list)
    # Whether the first token came on the AUTH line, per AUTH.
    initial_on_auth_line: list[bool] = field(default_factory=list)
    first_token_sizes: list[int] = field(default_factory=list)
    # The first token (AP-REQ with the ticket) as the base64 on the wire.
    received_tokens: list[str] = field(default_factory=list)
    # The (layer, max size) each client chose.
    chosen_layers: list[tuple[int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Reject every login with a 535 that quotes the first token as it came
    # on the wire, the way some servers echo what they were sent.
    echo_rejection: bool = False

    @auth_mechanism("GSSAPI")
    async def auth_GSSAPI(self, server: SMTP, args: list[str]) -> AuthResult:
        import gssapi

        if len(args) == 2:
            self.initial_on_auth_line.append(True)
            try:
                token = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        else:
            self.initial_on_auth_line.append(False)
            answer = await server.challenge_auth(b"")
            if answer is MISSING:
                return AuthResult(success=False, handled=True)
            token = bytes(answer)
        self.first_token_sizes.append(len(base64.b64encode(token)))
        self.received_tokens.append(base64.b64encode(token).decode())
        if self.echo_rejection:
            return AuthResult(
                success=False,
                handled=False,
                message="535 5.7.8 Authentication failed for "
                + self.received_tokens[-1],
            )

        credentials = gssapi.Credentials(usage="accept", store={"keytab": self.keytab})
        context = gssapi.SecurityContext(usage="accept", creds=credentials)
        try:
            return await self._exchange(server, context, token)
        except gssapi.exceptions.GSSError as exc:
            self.errors.append(str(exc))
            return AuthResult(success=False, handled=False, message=REJECTED)

    async def _exchange(self, server: SMTP, context: Any, token: bytes) -> AuthResult:
        while True:
            output = context.step(token)
            if context.complete:
                break
            answer = await server.challenge_auth(output or b"")
            if answer is MISSING:
                return AuthResult(success=False, handled=True)
            token = bytes(answer)
        # The last token (AP-REP) goes out even if empty. The client responds
        # with an empty line once its context is complete too.
        answer = await server.challenge_auth(output or b"")
        if answer is MISSING:
            return AuthResult(success=False, handled=True)

        offer = struct.pack(">I", self.offered_layers << 24 | 0)
        wrapped = context.wrap(offer, encrypt=False).message
        answer = await server.challenge_auth(wrapped)
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        choice = context.unwrap(bytes(answer)).message
        if len(choice) < 4:
            return AuthResult(success=False, handled=False, message=REJECTED)
        layer = choice[0]
        max_size = int.from_bytes(choice[1:4], "big")
        self.chosen_layers.append((layer, max_size))
        if not layer & self.offered_layers or (layer == 1 and max_size != 0):
            return AuthResult(success=False, handled=False, message=REJECTED)
        principal = str(context.initiator_name)
        authorization_id = choice[4:].decode()
        if authorization_id and authorization_id != principal:
            return AuthResult(success=False, handled=False, message=REJECTED)
        self.principals.append(principal)
        return AuthResult(success=True, auth_data=principal)
