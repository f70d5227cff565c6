"""SMTP smuggling sequences in bodies stay body text in one message."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Callable, Iterator

import pytest

from postroom.devserver.sink import SinkServer
from postroom.outbox.worker import Worker
from postroom.runtime import Runtime
from postroom.smtp.session import SmtpSession
from postroom.smtp.settings import ConnectionSettings
from tests.notifications import ORDER, add_profile, add_template, event, send
from tests.peers.lenient import LenientServer

# Each sequence ends DATA on some server that was open to SMTP smuggling;
# after it comes a complete second transaction.
SMUGGLED = "MAIL FROM:<eve@evil.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nFrom: ceo@shop.example\r\n\r\nPay now\r\n.\r\n"
SEQUENCES = ["\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r\n.\r\n", "\n.", "\r\n..\r\n"]


@pytest.fixture
def lenient() -> Iterator[LenientServer]:
    server = LenientServer().start()
    yield server
    server.stop()


def body_with(sequence: str) -> str:
    return f"Hello{sequence}{SMUGGLED}end of letter"


def deliver(runtime: Runtime) -> None:
    asyncio.run(Worker(runtime).drain())


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_lenient_server_gets_one_message(
    runtime: Runtime, lenient: LenientServer, sequence: str
) -> None:
    add_profile(runtime, lenient.port)
    add_template(
        runtime,
        text_body="{{ note }}",
        html_body="<p>{{ note }}</p>",
    )

    send(runtime, event(data={**ORDER, "note": body_with(sequence)}))
    deliver(runtime)

    (received,) = lenient.messages
    assert received.rcpt_tos == ["juergen@example.com"]
    assert [command for command in lenient.commands if command.startswith("MAIL")] == [
        "MAIL FROM:<orders@shop.example>"
    ]
    message = email.message_from_bytes(received.content, policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()
    assert "MAIL FROM:<eve@evil.example>" in text
    assert "Pay now" in text
    assert text.rstrip().endswith("end of letter")


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_real_server_gets_body_text(
    runtime: Runtime, start_sink: Callable[..., SinkServer], sequence: str
) -> None:
    server = start_sink()
    add_profile(runtime, server.port)
    add_template(runtime, text_body="{{ note }}", html_body=None)

    send(runtime, event(data={**ORDER, "note": body_with(sequence)}))
    deliver(runtime)

    (received,) = server.handler.messages
    assert received.mail_from == "orders@shop.example"
    assert received.rcpt_tos == ["juergen@example.com"]
    message = email.message_from_bytes(received.content, policy=email.policy.default)
    text = message.get_content().replace("\r\n", "\n")
    assert "MAIL FROM:<eve@evil.example>\nRCPT TO:<victim@example.com>\n" in text
    assert text.endswith("end of letter\n")


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_session_normalizes_raw_bytes(lenient: LenientServer, sequence: str) -> None:
    # Bytes the builder did not make: the SMTP session alone must keep them
    # one message, by turning bare CR and LF into CRLF and dot-stuffing.
    raw = (
        "From: orders@shop.example\r\nTo: bob@example.com\r\nSubject: x\r\n\r\n"
        + body_with(sequence)
    ).encode()
    settings = ConnectionSettings(
        host="127.0.0.1",
        port=lenient.port,
        security="none",
        connect_timeout=3.0,
        command_timeout=3.0,
    )

    async def send_raw() -> None:
        session = SmtpSession(settings)
        try:
            await session.open()
            await session.send("orders@shop.example", ["bob@example.com"], raw)
        finally:
            await session.close()

    asyncio.run(send_raw())

    (received,) = lenient.messages
    assert received.rcpt_tos == ["bob@example.com"]
    assert b"MAIL FROM:<eve@evil.example>" in received.content
    assert received.content.rstrip().endswith(b"end of letter")
