"""PIPELINING (RFC 2920) in delivery sessions, and the reply reader under it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from postroom.smtp.errors import ErrorKind, SmtpFailure, Step
from postroom.smtp.session import SendResult, SmtpSession
from postroom.smtp.settings import ConnectionSettings
from tests.peers.scripted import ScriptedServer

T = TypeVar("T")
NO_REPLY = "no reply"
MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n"


@dataclass
class Command:
    line: str
    # Commands received earlier on the connection whose replies were not yet
    # sent when this one arrived. Above zero only when the client pipelines.
    unanswered: int


@dataclass
class HoldingServer(asyncio.Protocol):
    """A server that replies to every command after ``hold`` seconds, in order.

    A client that waits for each reply sends nothing while a reply is held;
    a pipelining client sends its whole group at once, which shows in
    ``Command.unanswered``.
    """

    extensions: list[str] = field(default_factory=lambda: ["PIPELINING"])
    hold: float = 0.05
    # Write each reply one byte at a time, to split replies across reads.
    dribble: bool = False
    # Replies by verb, used one per command; the default is a 250.
    replies: dict[str, list[str]] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    _buffer: bytearray = field(default_factory=bytearray)
    _owed: int = 0
    _in_data: bool = False
    _transport: asyncio.Transport | None = None

    @property
    def unread(self) -> bytes:
        """Bytes received but not parsed yet, such as an unfinished message."""
        return bytes(self._buffer)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(b"220 holding.test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if self._in_data:
                end = self._buffer.find(b"\r\n.\r\n")
                if end < 0 and self._buffer.startswith(b".\r\n"):
                    body, rest = b"", 3
                elif end < 0:
                    return
                else:
                    body, rest = bytes(self._buffer[: end + 2]), end + 5
                del self._buffer[:rest]
                self._in_data = False
                self.bodies.append(body)
                reply = self._reply("END", "250 2.0.0 OK queued as HOLD")
                if reply != NO_REPLY:
                    self._answer(reply)
                continue
            end = self._buffer.find(b"\r\n")
            if end < 0:
                return
            line = self._buffer[:end].decode()
            del self._buffer[: end + 2]
            self.commands.append(Command(line, self._owed))
            self._command(line)

    def _reply(self, verb: str, default: str) -> str:
        queued = self.replies.get(verb)
        return queued.pop(0) if queued else default

    def _command(self, line: str) -> None:
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            lines = ["holding.test", *self.extensions]
            text = "".join(
                f"250{'-' if index < len(lines) - 1 else ' '}{value}\r\n"
                for index, value in enumerate(lines)
            )
            self._answer(text.removesuffix("\r\n"))
        elif verb == "DATA":
            reply = self._reply("DATA", "354 Start mail input")
            if reply == NO_REPLY:
                return
            self._in_data = reply.startswith("354")
            self._answer(reply)
        elif verb == "QUIT":
            self._answer("221 2.0.0 Bye")
        else:
            self._answer(self._reply(verb, "250 2.0.0 OK"))

    def _answer(self, reply: str) -> None:
        self._owed += 1
        loop = asyncio.get_running_loop()
        # Equal delays fire in the order they were set, so replies keep the
        # order of their commands.
        loop.call_later(self.hold, self._write, reply.encode() + b"\r\n")

    def _write(self, data: bytes) -> None:
        self._owed -= 1
        if self._transport is None or self._transport.is_closing():
            return
        if self.dribble:
            for index in range(len(data)):
                self._transport.write(data[index : index + 1])
        else:
            self._transport.write(data)
        if data.startswith(b"221") or data.startswith(b"421"):
            self._transport.close()


async def serve(server: HoldingServer) -> tuple[asyncio.AbstractServer, int]:
    listener = await asyncio.get_running_loop().create_server(
        lambda: server, "127.0.0.1", 0
    )
    return listener, listener.sockets[0].getsockname()[1]


def settings(port: int, **overrides: object) -> ConnectionSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "connect_timeout": 3.0,
        "command_timeout": 3.0,
    }
    values.update(overrides)
    return ConnectionSettings(**values)  # type: ignore[arg-type]


def run_against(
    server: HoldingServer,
    exchange: Callable[[SmtpSession], Awaitable[T]],
    *,
    factory: Callable[[ConnectionSettings], SmtpSession] = SmtpSession.for_delivery,
    **overrides: object,
) -> T:
    async def main() -> T:
        listener, port = await serve(server)
        session = factory(settings(port, **overrides))
        try:
            await session.open()
            return await exchange(session)
        finally:
            await session.close()
            listener.close()

    return asyncio.run(main())


def unanswered(server: HoldingServer) -> dict[str, list[int]]:
    counts: dict[str, list[int]] = {}
    for command in server.commands:
        counts.setdefault(command.line.split(" ")[0], []).append(command.unanswered)
    return counts


async def close_during(
    session: SmtpSession, sending: Coroutine[Any, Any, SendResult]
) -> SendResult:
    """Call close() once ``sending`` has started; return what it returned."""
    task = asyncio.create_task(sending)
    await asyncio.sleep(0)
    closing = asyncio.create_task(session.close())
    result = await task
    await closing
    return result


def send(session: SmtpSession, *recipients: str) -> Awaitable[SendResult]:
    return session.send("a@example.com", list(recipients), MESSAGE)


def test_delivery_pipelines_the_envelope() -> None:
    server = HoldingServer()

    result = run_against(
        server, lambda session: send(session, "b@example.com", "c@example.com")
    )

    # Each command arrived while every earlier one was still unanswered.
    assert unanswered(server)["MAIL"] == [0]
    assert unanswered(server)["RCPT"] == [1, 2]
    assert unanswered(server)["DATA"] == [3]
    assert set(result.accepted) == {"b@example.com", "c@example.com"}
    assert result.data is not None
    assert result.data.text == "2.0.0 OK queued as HOLD"
    assert server.bodies[0].endswith(b"Hello.\r\n")


def test_lockstep_without_pipelining_offer() -> None:
    server = HoldingServer(extensions=["8BITMIME"])

    result = run_against(server, lambda session: send(session, "b@example.com"))

    assert all(command.unanswered == 0 for command in server.commands)
    assert result.data is not None


def test_test_email_never_pipelines() -> None:
    # A test email's transcript shows each reply under its own command.
    server = HoldingServer()

    run_against(
        server, lambda session: send(session, "b@example.com"), factory=SmtpSession
    )

    assert all(command.unanswered == 0 for command in server.commands)


def test_replies_split_into_bytes() -> None:
    server = HoldingServer(
        dribble=True,
        replies={"RCPT": ["250-2.1.5 first line\n250 2.1.5 Recipient OK"]},
    )

    result = run_against(server, lambda session: send(session, "b@example.com"))

    reply = result.accepted["b@example.com"]
    assert reply.code == 250
    assert reply.text == "2.1.5 first line\n2.1.5 Recipient OK"


def test_missing_data_reply_times_out() -> None:
    server = HoldingServer(replies={"END": [NO_REPLY]})

    async def exchange(session: SmtpSession) -> tuple[SmtpFailure, bool]:
        with pytest.raises(SmtpFailure) as caught:
            await send(session, "b@example.com")
        return caught.value, session.is_connected

    failure, connected = run_against(server, exchange, command_timeout=0.5)

    assert failure.kind == ErrorKind.TIMEOUT
    assert failure.step == Step.DATA
    # A reply that comes late would be taken for the next command's.
    assert not connected


def start_scripted_server(replies: dict[str, Any]) -> ScriptedServer:
    return ScriptedServer(extensions=["PIPELINING"], replies=replies).start()


def data_code(result: SendResult | SmtpFailure) -> int | None:
    """The reply code to the message, None when it was not sent."""
    assert isinstance(result, SendResult)
    return result.data.code if result.data is not None else None


async def two_sends(
    session: SmtpSession, first: list[str], second: list[str]
) -> tuple[SendResult | SmtpFailure, SendResult]:
    """Send twice on one session: the second shows it stayed in step."""
    try:
        earlier: SendResult | SmtpFailure = await session.send(
            "a@example.com", first, MESSAGE
        )
    except SmtpFailure as failure:
        earlier = failure
    later = await session.send("a@example.com", second, MESSAGE)
    return earlier, later


def scripted_exchange(
    replies: dict[str, object], first: list[str], second: list[str]
) -> tuple[ScriptedServer, SendResult | SmtpFailure, SendResult]:
    server = start_scripted_server(replies)
    try:

        async def main() -> tuple[SendResult | SmtpFailure, SendResult]:
            session = SmtpSession.for_delivery(settings(server.port))
            try:
                await session.open()
                return await two_sends(session, first, second)
            finally:
                await session.close()

        earlier, later = asyncio.run(main())
    finally:
        server.stop()
    return server, earlier, later


def test_refused_recipient_spares_others() -> None:
    def rcpt(address: str) -> str:
        if address == "gone@example.com":
            return "550 5.1.1 <gone@example.com>: user unknown"
        return "250 2.1.5 OK"

    server, earlier, later = scripted_exchange(
        {"RCPT": rcpt}, ["gone@example.com", "b@example.com"], ["c@example.com"]
    )

    assert isinstance(earlier, SendResult)
    assert earlier.refused["gone@example.com"].code == 550
    assert list(earlier.accepted) == ["b@example.com"]
    assert data_code(earlier) == 250
    assert [message.rcpt_tos for message in server.messages] == [
        ["b@example.com"],
        ["c@example.com"],
    ]
    assert data_code(later) == 250


def test_all_refused_sends_no_message() -> None:
    server, earlier, later = scripted_exchange(
        {
            "RCPT": ["550 5.1.1 unknown", "250 2.1.5 OK"],
            "DATA_START": ["554 5.5.1 No valid recipients", "354 Go ahead"],
        },
        ["gone@example.com"],
        ["b@example.com"],
    )

    assert data_code(earlier) is None
    assert isinstance(earlier, SendResult)
    assert earlier.refused["gone@example.com"].code == 550
    assert "RSET" in server.commands
    assert [message.rcpt_tos for message in server.messages] == [["b@example.com"]]
    assert data_code(later) == 250


def test_data_354_after_all_refused() -> None:
    # RFC 2920, 3.1: a server that replies 354 anyway gets a lone ".", and
    # the client goes on without sending any message content.
    server = HoldingServer(
        replies={"RCPT": ["550 5.1.1 unknown"], "END": ["554 5.5.1 No recipients"]}
    )

    async def exchange(
        session: SmtpSession,
    ) -> tuple[SendResult | SmtpFailure, SendResult]:
        return await two_sends(session, ["gone@example.com"], ["b@example.com"])

    earlier, later = run_against(server, exchange)

    assert data_code(earlier) is None
    assert server.bodies[0] == b""
    assert [command.line for command in server.commands].count("RSET") == 1
    assert data_code(later) == 250
    assert server.bodies[1].endswith(b"Hello.\r\n")


def test_refused_sender_stays_in_step() -> None:
    server, earlier, later = scripted_exchange(
        {
            "MAIL": ["550 5.7.1 Sender not allowed", "250 2.1.0 OK"],
            "RCPT": ["503 5.5.1 Bad sequence", "250 2.1.5 OK"],
            "DATA_START": ["503 5.5.1 Bad sequence", "354 Go ahead"],
        },
        ["b@example.com"],
        ["b@example.com"],
    )

    assert isinstance(earlier, SmtpFailure)
    assert earlier.step == Step.MAIL_FROM
    assert earlier.reply_code == 550
    assert data_code(later) == 250
    assert len(server.messages) == 1


def test_421_mid_group_closes_session() -> None:
    server = start_scripted_server({"RCPT": "421 4.7.0 Too many connections, closing"})
    try:

        async def main() -> tuple[SmtpFailure, bool]:
            session = SmtpSession.for_delivery(settings(server.port))
            try:
                await session.open()
                with pytest.raises(SmtpFailure) as caught:
                    await session.send("a@example.com", ["b@example.com"], MESSAGE)
                return caught.value, session.is_connected
            finally:
                await session.close()

        failure, connected = asyncio.run(main())
    finally:
        server.stop()

    assert failure.step == Step.RCPT_TO
    assert failure.reply_code == 421
    assert not connected
    # The client hung up without sending the message content.
    assert all(message.content == b"" for message in server.messages)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("hello there", "Malformed SMTP response line"),
        ("250-" + "x" * 9000, "Response too long"),
    ],
)
def test_non_smtp_reply_is_protocol_failure(reply: str, error: str) -> None:
    server = HoldingServer(replies={"RCPT": [reply]})

    async def exchange(session: SmtpSession) -> tuple[SmtpFailure, bool]:
        with pytest.raises(SmtpFailure) as caught:
            await send(session, "b@example.com")
        return caught.value, session.is_connected

    failure, connected = run_against(server, exchange)

    assert failure.kind == ErrorKind.PROTOCOL
    assert error in (failure.error or "")
    assert not connected


def test_close_waits_for_the_transaction() -> None:
    # Retiring a pool closes busy connections too; QUIT must not land in
    # the middle of a transaction, where it would become message content.
    server = HoldingServer()

    result = run_against(
        server,
        lambda session: close_during(
            session, session.send("a@example.com", ["b@example.com"], MESSAGE)
        ),
    )

    assert result.data is not None
    assert result.data.code == 250
    assert server.bodies[0].startswith(b"From: a@example.com")
    assert [command.line for command in server.commands][-1] == "QUIT"


def test_data_354_after_refused_sender() -> None:
    server = HoldingServer(
        replies={
            "MAIL": ["550 5.7.1 Sender not allowed"],
            "RCPT": ["503 5.5.1 Need MAIL"],
            "DATA": ["354 Go ahead anyway"],
        }
    )

    async def exchange(
        session: SmtpSession,
    ) -> tuple[SendResult | SmtpFailure, SendResult]:
        return await two_sends(session, ["b@example.com"], ["b@example.com"])

    earlier, later = run_against(server, exchange, command_timeout=2.0)

    assert isinstance(earlier, SmtpFailure)
    assert earlier.reply_code == 550
    # An empty end closed the unwanted DATA, so the next message went out.
    assert server.bodies[0] == b""
    assert data_code(later) == 250
    assert server.bodies[1].endswith(b"Hello.\r\n")


def test_refusals_kept_when_data_unanswered() -> None:
    server = HoldingServer(replies={"RCPT": ["550 5.1.1 unknown"], "DATA": [NO_REPLY]})

    async def exchange(session: SmtpSession) -> tuple[SendResult, bool]:
        result = await send(session, "gone@example.com")
        return result, session.is_connected

    result, connected = run_against(server, exchange, command_timeout=0.5)

    assert result.refused["gone@example.com"].code == 550
    assert result.data is None
    assert not connected


def test_address_with_space_is_not_sent() -> None:
    server = HoldingServer()

    async def exchange(session: SmtpSession) -> SmtpFailure:
        with pytest.raises(SmtpFailure) as caught:
            await send(session, "b@example.com> NOTIFY=NEVER")
        return caught.value

    failure = run_against(server, exchange)

    assert failure.kind == ErrorKind.PROTOCOL
    assert "SMTP path" in (failure.error or "")
    assert not any(command.line.startswith("RCPT") for command in server.commands)
