"""The next transaction's commands sent with the last message's final dot."""

from __future__ import annotations

import pytest

from postroom.smtp.errors import ErrorKind, SmtpFailure, Step
from postroom.smtp.session import MailTransaction, SendResult, SmtpSession
from tests.smtp.test_pipelining import (
    MESSAGE,
    HoldingServer,
    close_during,
    run_against,
    unanswered,
)

SECOND = MESSAGE.replace(b"Hello.", b"Second message.")
NEXT = MailTransaction("a@example.com", ("c@example.com",), SECOND)


async def send_first(session: SmtpSession) -> SendResult:
    return await session.send("a@example.com", ["b@example.com"], MESSAGE, then=NEXT)


async def send_next(session: SmtpSession) -> SendResult:
    return await session.send("a@example.com", ["c@example.com"], SECOND)


def test_next_commands_ride_with_final_dot() -> None:
    server = HoldingServer()

    async def exchange(session: SmtpSession) -> list[SendResult]:
        first = await send_first(session)
        assert session.announced == NEXT
        second = await send_next(session)
        assert session.announced is None
        return [first, second]

    results = run_against(server, exchange)

    # The second MAIL arrived while the reply to the first message's "."
    # was still owed: it went out in the same write.
    assert unanswered(server)["MAIL"] == [0, 1]
    assert unanswered(server)["DATA"] == [2, 3]
    assert [result.data.code for result in results if result.data] == [250, 250]
    assert server.bodies == [MESSAGE, SECOND]
    assert server.commands[-1].line == "QUIT"


def test_rejected_message_drops_the_next() -> None:
    server = HoldingServer(replies={"END": ["554 5.6.0 Content rejected"]})

    async def exchange(session: SmtpSession) -> tuple[SmtpFailure, SmtpFailure, bool]:
        with pytest.raises(SmtpFailure) as rejected:
            await send_first(session)
        connected = session.is_connected
        with pytest.raises(SmtpFailure) as closed:
            await send_next(session)
        return rejected.value, closed.value, connected

    rejected, closed, connected = run_against(server, exchange)

    assert rejected.step == Step.DATA
    assert rejected.reply_code == 554
    # The server was already reading the second message, so the connection
    # was closed rather than left to deliver it.
    assert not connected
    assert server.bodies == [MESSAGE]
    # As on a connection the server closed while idle: the engine sends the
    # message again on a new connection, counting no attempt.
    assert closed.step == Step.MAIL_FROM
    assert closed.kind == ErrorKind.DISCONNECTED
    assert closed.reply_code is None


def test_other_transaction_than_announced_fails() -> None:
    server = HoldingServer()

    async def exchange(session: SmtpSession) -> tuple[SmtpFailure, bool]:
        await send_first(session)
        with pytest.raises(SmtpFailure) as caught:
            await session.send("a@example.com", ["d@example.com"], SECOND)
        return caught.value, session.is_connected

    failure, connected = run_against(server, exchange)

    assert failure.step == Step.MAIL_FROM
    assert failure.kind == ErrorKind.DISCONNECTED
    assert not connected
    assert server.bodies == [MESSAGE]
    assert all("d@example.com" not in command.line for command in server.commands)


def test_close_after_announcing_sends_no_quit() -> None:
    server = HoldingServer()

    async def exchange(session: SmtpSession) -> SendResult:
        result = await send_first(session)
        await session.close()
        return result

    result = run_against(server, exchange)

    assert result.data is not None
    # QUIT would have become the second message's content.
    assert "QUIT" not in [command.line for command in server.commands]
    assert server.bodies == [MESSAGE]


def test_reset_after_announcing_closes() -> None:
    server = HoldingServer()

    async def exchange(session: SmtpSession) -> bool:
        await send_first(session)
        await session.reset()
        return session.is_connected

    connected = run_against(server, exchange)

    assert not connected
    assert "RSET" not in [command.line for command in server.commands]
    assert server.bodies == [MESSAGE]


def test_nothing_announced_without_pipelining() -> None:
    server = HoldingServer(extensions=["8BITMIME"])

    async def exchange(session: SmtpSession) -> list[SendResult]:
        first = await send_first(session)
        assert session.announced is None
        return [first, await send_next(session)]

    results = run_against(server, exchange)

    assert all(command.unanswered == 0 for command in server.commands)
    assert [result.data.code for result in results if result.data] == [250, 250]
    assert server.bodies == [MESSAGE, SECOND]


def test_too_large_next_is_not_announced() -> None:
    server = HoldingServer(extensions=["PIPELINING", f"SIZE {len(MESSAGE) + 10}"])
    oversized = MailTransaction("a@example.com", ("c@example.com",), SECOND * 2)

    async def exchange(session: SmtpSession) -> tuple[SendResult, SmtpFailure]:
        first = await session.send(
            "a@example.com", ["b@example.com"], MESSAGE, then=oversized
        )
        assert session.announced is None
        with pytest.raises(SmtpFailure) as caught:
            await session.send("a@example.com", ["c@example.com"], SECOND * 2)
        return first, caught.value

    first, failure = run_against(server, exchange)

    assert first.data is not None
    # The oversized message fails on its own, before any of its commands.
    assert failure.kind == ErrorKind.TOO_LARGE
    assert [command.line.split(" ")[0] for command in server.commands].count(
        "MAIL"
    ) == 1


def test_close_during_announcing_send_sends_no_quit() -> None:
    # Retiring a pool closes busy connections too. close() waits for the
    # send, which then announces: QUIT would land in the announced DATA.
    server = HoldingServer()

    result = run_against(
        server, lambda session: close_during(session, send_first(session))
    )

    assert result.data is not None
    assert server.bodies == [MESSAGE]
    assert "QUIT" not in [command.line for command in server.commands]
    assert b"QUIT" not in server.unread


def test_reply_to_no_command_drops_the_next() -> None:
    # A second reply after the final dot would be read as the announced
    # MAIL FROM's, and every later reply paired with the wrong command.
    server = HoldingServer(replies={"END": ["250 2.0.0 OK\r\n250 2.0.0 Again"]})

    async def exchange(session: SmtpSession) -> tuple[SendResult, SmtpFailure]:
        first = await send_first(session)
        with pytest.raises(SmtpFailure) as caught:
            await send_next(session)
        return first, caught.value

    first, failure = run_against(server, exchange)

    assert first.data is not None
    assert first.data.text == "2.0.0 OK"
    assert failure.step == Step.MAIL_FROM
    assert failure.kind == ErrorKind.DISCONNECTED
    assert server.bodies == [MESSAGE]
