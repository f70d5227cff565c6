"""An SMTP server that accepts AUTH XOAUTH2 bearer tokens of the test provider.

A rejected token gets Google's reply: a 334 challenge with a base64 JSON
error, then 535 once the client has sent its empty line.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, auth_mechanism

from postroom.devserver.sink import SinkHandler
from tests.peers.oauth_server import SMTP_SCOPE, OAuthServer

REJECTED = "535 5.7.8 Username and Password not accepted"


@dataclass
class XOAuth2Handler(SinkHandler):
    provider: OAuthServer | None = None
    required_scope: str = SMTP_SCOPE
    # Whether the initial response came on the AUTH line, per AUTH.
    initial_on_auth_line: list[bool] = field(default_factory=list)
    accepted_tokens: list[str] = field(default_factory=list)
    rejected_tokens: list[str] = field(default_factory=list)
    # Each initial response as the base64 sent on the wire.
    received_responses: list[str] = field(default_factory=list)
    # Reject every login with a 535 that quotes the initial response as it
    # came on the wire, the way some servers echo what they were sent.
    echo_rejection: bool = False

    @auth_mechanism("XOAUTH2")
    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 2:
            self.initial_on_auth_line.append(True)
            try:
                data = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        else:
            self.initial_on_auth_line.append(False)
            answer = await server.challenge_auth(b"")
            if answer is MISSING:
                return AuthResult(success=False, handled=True)
            data = bytes(answer)

        self.received_responses.append(base64.b64encode(data).decode())
        if self.echo_rejection:
            return AuthResult(
                success=False,
                handled=False,
                message="535 5.7.8 Authentication failed for "
                + self.received_responses[-1],
            )
        fields = dict(
            part.split("=", 1) for part in data.decode().split("\x01") if "=" in part
        )
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        assert self.provider is not None
        if self.provider.valid_access_token(token, user, self.required_scope):
            self.accepted_tokens.append(token)
            return AuthResult(success=True, auth_data=user)

        self.rejected_tokens.append(token)
        error = {"status": "401", "schemes": "bearer", "scope": self.required_scope}
        answer = await server.challenge_auth(json.dumps(error).encode())
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=REJECTED)
