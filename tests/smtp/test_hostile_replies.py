"""Servers whose replies misbehave on purpose, against the real session.

They echo what the client sent during AUTH, put control characters in their
text, agree to STARTTLS and then break the handshake, or never end their
greeting. The test email must mask every AUTH line, escape control
characters, keep the server's 220 in the transcript and name what happened.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest

from postroom.diagnosis.testmail import TestEmailResult, send_test_email
from postroom.smtp.settings import ConnectionSettings
from postroom.smtp.transcript import SECRET_HIDDEN
from tests.peers.certs import Certificates
from tests.peers.scripted import DROP, HANG, Raw, ScriptedServer

LOGIN = "alice@example.com"
PASSWORD = "Echo-Secret-Passw0rd"
ACCESS_TOKEN = "ya29.Echoed-Access-Token-0042"


class StaticTokenSource:
    """A token source that always has the same fresh access token."""

    async def access_token(self, *, refresh: bool = False) -> tuple[str, bool]:
        return ACCESS_TOKEN, True


def send_test(settings: ConnectionSettings) -> TestEmailResult:
    return asyncio.run(
        send_test_email("Orders", settings, "orders@example.com", "bob@example.com")
    )


def settings_for(server: ScriptedServer, **overrides: Any) -> ConnectionSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "login": LOGIN,
        "password": PASSWORD,
        "connect_timeout": 2.0,
        "command_timeout": 2.0,
    }
    values.update(overrides)
    return ConnectionSettings(**values)


@pytest.mark.parametrize(
    ("offered", "mechanism", "diagnosis"),
    [
        ("PLAIN", "UserPassword", "auth-credentials-rejected"),
        ("LOGIN", "UserPassword", "auth-credentials-rejected"),
        ("CRAM-MD5", "CRAM-MD5", "auth-credentials-rejected"),
        ("XOAUTH2", "XOAUTH2", "xoauth2-token-rejected"),
    ],
)
def test_echoed_auth_lines_are_masked(
    start_scripted: Callable[..., ScriptedServer],
    offered: str,
    mechanism: str,
    diagnosis: str,
) -> None:
    server = start_scripted(extensions=[f"AUTH {offered}"], auth_echo=True)
    overrides: dict[str, Any] = {"mechanism": mechanism}
    if mechanism == "XOAUTH2":
        overrides.update(
            password=None, mechanism_options={"token_source": StaticTokenSource()}
        )

    result = send_test(settings_for(server, **overrides))

    assert server.auth_lines, "the client sent no AUTH line: nothing was checked"
    assert result.diagnosis == diagnosis
    assert result.reply_code == 535
    assert SECRET_HIDDEN in (result.reply_text or "")
    shown = json.dumps(result.as_dict())
    for line in server.auth_lines:
        assert line not in shown
    assert PASSWORD not in shown
    assert ACCESS_TOKEN not in shown


def test_echoed_cram_md5_digest_is_masked(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    # The decoded response is "login digest", and the server echoes it decoded.
    server = start_scripted(extensions=["AUTH CRAM-MD5"], auth_echo=True)

    result = send_test(settings_for(server, mechanism="CRAM-MD5"))

    digest = hmac.new(
        PASSWORD.encode(), b"<1896.697170952@scripted.test>", "md5"
    ).hexdigest()
    assert base64.b64decode(server.auth_lines[0]).decode() == f"{LOGIN} {digest}"
    assert digest not in json.dumps(result.as_dict())


def test_login_stays_visible_after_auth(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    # The LOGIN user name line decodes to the login, which must stay readable
    # where the server or the envelope shows it.
    server = start_scripted(
        extensions=["AUTH LOGIN"],
        auth_echo=True,
        replies={"QUIT": f"221 2.0.0 Bye {LOGIN}"},
    )

    result = send_test(settings_for(server))

    assert any(f"221 2.0.0 Bye {LOGIN}" in line for line in result.transcript)


def test_control_characters_in_reply_are_escaped(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(
        replies={"MAIL": "550-5.7.1 denied\rX-Injected: yes\n550 5.7.1 \x1b[2Jsee you"}
    )

    result = send_test(settings_for(server, login=None, password=None))

    assert result.reply_text == "5.7.1 denied\\rX-Injected: yes\n5.7.1 \\x1b[2Jsee you"
    assert result.cause is not None
    assert (
        '"550 5.7.1 denied\\rX-Injected: yes\\n5.7.1 \\x1b[2Jsee you"' in result.cause
    )
    for text in (result.cause, result.fix or "", *result.transcript):
        assert "\r" not in text
        assert "\n" not in text
        assert "\x1b" not in text


def test_control_characters_in_error_are_escaped(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(greeting=Raw(b"2x0 hello\r\x1b[1m there\r\n", then=HANG))

    result = send_test(settings_for(server, login=None, password=None))

    assert result.diagnosis == "greeting-garbled"
    assert (
        result.reply_text == "Malformed SMTP response line: 2x0 hello\\r\\x1b[1m there"
    )
    for text in (result.reply_text, result.cause or "", *result.transcript):
        assert "\r" not in text
        assert "\x1b" not in text


def test_starttls_reply_kept_when_handshake_breaks(
    start_scripted: Callable[..., ScriptedServer], certificates: Certificates
) -> None:
    # The server agrees, then sends bytes that are not a TLS handshake: what
    # an on-path attacker who strips TLS does.
    server = start_scripted(
        extensions=["STARTTLS", "AUTH PLAIN LOGIN"],
        replies={
            "STARTTLS": Raw(
                b"220 2.0.0 Ready to start TLS\r\n\x16\x03\x01\x00\x10garbage-not-tls",
                then=DROP,
            )
        },
    )

    result = send_test(
        settings_for(
            server,
            host="localhost",
            security="starttls",
            ca_bundle=str(certificates.ca_file),
        )
    )

    assert result.ok is False
    assert result.step == "starttls"
    # Each rendered line is "seconds direction: text".
    entries = [line.split(maxsplit=1)[1] for line in result.transcript]
    starttls = entries.index("C: STARTTLS")
    assert entries[starttls + 1] == "S: 220 2.0.0 Ready to start TLS"
    assert not any(command.upper().startswith("AUTH") for command in server.commands)


def test_greeting_that_never_ends(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(
        greeting=Raw(b"220-still greeting\r\n" * 4 + b"220-half a li", then=HANG)
    )

    result = send_test(
        settings_for(server, login=None, password=None, connect_timeout=0.5)
    )

    assert result.diagnosis == "greeting-unfinished"
    assert result.transient is True
    assert "sent no SMTP greeting" not in (result.cause or "")
    assert "never ended" in (result.cause or "")
    assert "4 lines of a multi-line greeting" in (result.reply_text or "")
    assert any("220-still greeting" in line for line in result.transcript)


def test_reply_code_999_is_protocol_error(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(replies={"RCPT": "999 weird"})

    result = send_test(settings_for(server, login=None, password=None))

    assert result.step == "rcpt_to"
    assert result.reply_code == 999
    assert result.diagnosis == "protocol-error"
    assert result.transient is False
    assert "999" in (result.cause or "")
