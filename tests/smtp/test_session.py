"""The SMTP session against real aiosmtpd servers in every security mode."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from postroom.devserver.sink import SinkServer
from postroom.smtp.errors import ErrorKind, SmtpFailure, Step
from postroom.smtp.session import SmtpSession, encode_data
from postroom.smtp.settings import ConnectionSettings
from postroom.smtp.transcript import Transcript
from tests.peers.certs import Certificates

USERS = {"alice": "correct horse battery"}
MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n"


def settings_for(
    server: SinkServer, security: str, certificates: Certificates, **overrides: object
) -> ConnectionSettings:
    values: dict[str, object] = {
        "host": "localhost",
        "port": server.port,
        "security": security,
        "login": "alice",
        "password": USERS["alice"],
        "ca_bundle": str(certificates.ca_file),
        "connect_timeout": 3.0,
        "command_timeout": 3.0,
    }
    values.update(overrides)
    return ConnectionSettings(**values)  # type: ignore[arg-type]


async def send_once(
    settings: ConnectionSettings, transcript: Transcript | None = None
) -> str:
    session = SmtpSession(settings, transcript)
    try:
        await session.open()
        result = await session.send("a@example.com", ["b@example.com"], MESSAGE)
        assert result.data is not None
        return result.data.text
    finally:
        await session.close()


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
@pytest.mark.parametrize("mechanism", ["UserPassword", "CRAM-MD5"])
def test_send_in_every_security_mode(
    start_sink: Callable[..., SinkServer],
    certificates: Certificates,
    security: str,
    mechanism: str,
) -> None:
    server = start_sink(security, users=USERS)
    settings = settings_for(server, security, certificates, mechanism=mechanism)

    reply = asyncio.run(send_once(settings))

    assert reply.startswith("2.0.0 OK queued as ")
    assert len(server.handler.messages) == 1
    received = server.handler.messages[0]
    assert received.login == "alice"
    assert received.rcpt_tos == ["b@example.com"]


def test_user_password_uses_login_when_plain_missing(
    start_scripted: Callable[..., object],
) -> None:
    server = start_scripted(extensions=["AUTH LOGIN"], users=USERS)
    settings = ConnectionSettings(
        host="127.0.0.1",
        port=server.port,
        security="none",
        login="alice",
        password=USERS["alice"],
        connect_timeout=3,
        command_timeout=3,
    )

    asyncio.run(send_once(settings))

    assert any(command.startswith("AUTH LOGIN") for command in server.commands)
    assert server.messages[0].login == "alice"


def test_no_login_skips_auth(start_scripted: Callable[..., object]) -> None:
    server = start_scripted(extensions=["AUTH PLAIN LOGIN"])
    settings = ConnectionSettings(
        host="127.0.0.1",
        port=server.port,
        security="none",
        connect_timeout=3,
        command_timeout=3,
    )

    asyncio.run(send_once(settings))

    assert not any(command.startswith("AUTH") for command in server.commands)
    assert len(server.messages) == 1


def test_transcript_hides_auth_exchange(
    start_sink: Callable[..., SinkServer], certificates: Certificates
) -> None:
    server = start_sink("starttls", users=USERS)
    transcript = Transcript()
    for mechanism in ("UserPassword", "CRAM-MD5"):
        settings = settings_for(server, "starttls", certificates, mechanism=mechanism)
        asyncio.run(send_once(settings, transcript))

    rendered = "\n".join(transcript.render())
    password = USERS["alice"]
    plain_blob = base64.b64encode(f"\0alice\0{password}".encode()).decode()
    assert password not in rendered
    assert base64.b64encode(password.encode()).decode() not in rendered
    assert plain_blob not in rendered
    assert "AUTH PLAIN [AUTH data hidden]" in rendered
    assert "334 [AUTH data hidden]" in rendered
    assert "235 2.7.0 Authentication successful" in rendered


def test_rejected_recipient_does_not_stop_others(
    start_scripted: Callable[..., object],
) -> None:
    server = start_scripted(
        replies={
            "RCPT": lambda address: (
                "550 5.1.1 User unknown"
                if address.startswith("nobody")
                else "250 2.1.5 OK"
            )
        }
    )
    settings = ConnectionSettings(
        host="127.0.0.1",
        port=server.port,
        security="none",
        connect_timeout=3,
        command_timeout=3,
    )

    async def run() -> object:
        session = SmtpSession(settings)
        await session.open()
        try:
            return await session.send(
                "a@example.com", ["nobody@example.com", "b@example.com"], MESSAGE
            )
        finally:
            await session.close()

    result = asyncio.run(run())

    assert list(result.refused) == ["nobody@example.com"]  # type: ignore[attr-defined]
    assert result.refused["nobody@example.com"].code == 550  # type: ignore[attr-defined]
    assert list(result.accepted) == ["b@example.com"]  # type: ignore[attr-defined]
    assert server.messages[0].rcpt_tos == ["b@example.com"]


def test_smtputf8_required_but_not_offered(
    start_scripted: Callable[..., object],
) -> None:
    server = start_scripted(extensions=["8BITMIME"])
    settings = ConnectionSettings(
        host="127.0.0.1",
        port=server.port,
        security="none",
        connect_timeout=3,
        command_timeout=3,
    )

    async def run() -> None:
        session = SmtpSession(settings)
        await session.open()
        try:
            await session.send(
                "jörg@example.com", ["b@example.com"], MESSAGE, smtputf8=True
            )
        finally:
            await session.close()

    with pytest.raises(SmtpFailure) as caught:
        asyncio.run(run())
    assert caught.value.step == Step.MAIL_FROM
    assert caught.value.kind == ErrorKind.NOT_OFFERED
    assert not any(command.startswith("MAIL") for command in server.commands)


def test_message_over_announced_size_is_not_sent(
    start_scripted: Callable[..., object],
) -> None:
    server = start_scripted(extensions=["SIZE 100"])
    settings = ConnectionSettings(
        host="127.0.0.1",
        port=server.port,
        security="none",
        connect_timeout=3,
        command_timeout=3,
    )

    async def run() -> None:
        session = SmtpSession(settings)
        await session.open()
        try:
            await session.send("a@example.com", ["b@example.com"], MESSAGE * 10)
        finally:
            await session.close()

    with pytest.raises(SmtpFailure) as caught:
        asyncio.run(run())
    assert caught.value.kind == ErrorKind.TOO_LARGE
    assert caught.value.details["size_limit"] == 100


def test_encode_data_normalizes_bare_line_breaks() -> None:
    # A bare LF before ".\r\n" is the SMTP smuggling pattern: a server that
    # accepts bare LF as a line end would see the message end early.
    smuggling = b"Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<evil@example.com>\r\n"

    payload = encode_data(smuggling)

    assert b"\n.\r\n" not in payload[:-5]
    assert payload.endswith(b"\r\n.\r\n")
    assert payload.count(b"\r\n.\r\n") == 1
    assert b"\r\n..\r\nMAIL FROM" in payload
    assert b"\r" not in payload.replace(b"\r\n", b"")
    assert b"\n" not in payload.replace(b"\r\n", b"")


def test_smuggling_sequence_arrives_as_body(
    start_scripted: Callable[..., object],
) -> None:
    server = start_scripted()
    settings = ConnectionSettings(
        host="127.0.0.1",
        port=server.port,
        security="none",
        connect_timeout=3,
        command_timeout=3,
    )
    body = b"Subject: x\r\n\r\nline\n.\r\nRSET\r\nMAIL FROM:<evil@example.com>\r\n.\rtail\r\n"

    async def run() -> None:
        session = SmtpSession(settings)
        await session.open()
        try:
            await session.send("a@example.com", ["b@example.com"], body)
        finally:
            await session.close()

    asyncio.run(run())

    assert len(server.messages) == 1
    assert server.messages[0].mail_from == "a@example.com"
    assert b"MAIL FROM:<evil@example.com>" in server.messages[0].content
    assert sum(command.startswith("MAIL") for command in server.commands) == 1


def _encode_by_substitution(message: bytes) -> bytes:
    """The encoding spelled out in full, to check encode_data's shortcuts."""
    normalized = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    if not normalized.endswith(b"\r\n"):
        normalized += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", normalized) + b".\r\n"


@given(
    st.lists(
        st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"..", b" ", b"\x00"]),
        max_size=40,
    )
)
@example([b"a", b"\r\n", b"a"])
@example([b".", b"a", b"\r\n", b"."])
def test_encode_data_matches_substitution(pieces: list[bytes]) -> None:
    message = b"".join(pieces)

    assert encode_data(message) == _encode_by_substitution(message)
