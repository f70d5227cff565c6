"""The outbox and the worker on SQLite and PostgreSQL, against real servers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update

from postroom.clock import utcnow
from postroom.devserver.sink import SinkServer
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.models import MessageStatus, OutboxMessage
from postroom.outbox import store
from postroom.runtime import Runtime
from tests.outbox.helpers import add_profile, drain, queue, view
from tests.peers.scripted import DROP, ScriptedServer


def make_due(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status == MessageStatus.QUEUED)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


def test_queued_message_reaches_server_with_reply_recorded(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    add_profile(any_runtime, server.port)
    message_pk = queue(any_runtime, cc=["carol@example.com"], bcc=["audit@example.com"])

    assert view(any_runtime, message_pk)["status"] == "queued"
    assert drain(any_runtime) == 1

    received = server.handler.messages
    assert len(received) == 1
    assert received[0].rcpt_tos == [
        "bob@example.com",
        "carol@example.com",
        "audit@example.com",
    ]
    assert "audit@example.com" not in received[0].content.decode()
    shown = view(any_runtime, message_pk)
    assert shown["status"] == "sent"
    assert shown["provider_queue_id"] == received[0].id
    assert received[0].headers["Message-ID"] == shown["message_id"]
    for recipient in shown["recipients"]:
        assert recipient["status"] == "accepted"
        assert recipient["reply_code"] == 250
        assert recipient["reply_text"] == f"2.0.0 OK queued as {received[0].id}"
    assert [attempt["outcome"] for attempt in shown["attempts"]] == ["sent"]


def test_refused_recipient_fails_while_others_are_sent(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(
        replies={
            "RCPT": lambda address: (
                "550 5.1.1 User unknown"
                if address.startswith("ghost")
                else "250 2.1.5 OK"
            )
        }
    )
    add_profile(any_runtime, server.port)
    message_pk = queue(any_runtime, to=["ghost@example.com", "bob@example.com"])

    drain(any_runtime)

    shown = view(any_runtime, message_pk)
    by_address = {recipient["address"]: recipient for recipient in shown["recipients"]}
    assert shown["status"] == "partially_sent"
    assert by_address["ghost@example.com"]["status"] == "failed"
    assert by_address["ghost@example.com"]["reply_code"] == 550
    assert by_address["ghost@example.com"]["enhanced_status"] == "5.1.1"
    assert by_address["bob@example.com"]["status"] == "accepted"
    assert server.messages[0].rcpt_tos == ["bob@example.com"]


def test_transient_recipient_retried_alone(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    answers = {"carol@example.com": ["452 4.2.2 Mailbox full", "250 2.1.5 OK"]}

    def rcpt(address: str) -> str:
        queue_for = answers.get(address)
        return queue_for.pop(0) if queue_for else "250 2.1.5 OK"

    server = start_scripted(replies={"RCPT": rcpt})
    add_profile(any_runtime, server.port)
    message_pk = queue(any_runtime, to=["bob@example.com", "carol@example.com"])

    drain(any_runtime)
    first = view(any_runtime, message_pk)
    make_due(any_runtime)
    drain(any_runtime)
    second = view(any_runtime, message_pk)

    assert first["status"] == "queued"
    assert {r["address"]: r["status"] for r in first["recipients"]} == {
        "bob@example.com": "accepted",
        "carol@example.com": "deferred",
    }
    assert second["status"] == "sent"
    assert [received.rcpt_tos for received in server.messages] == [
        ["bob@example.com"],
        ["carol@example.com"],
    ]
    assert [attempt["outcome"] for attempt in second["attempts"]] == [
        "deferred",
        "sent",
    ]
    assert server.messages[0].content == server.messages[1].content


def test_transient_failure_backs_off_then_gives_up(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(greeting="421 4.7.0 Try again later, closing connection")
    add_profile(any_runtime, server.port)
    message_pk = queue(any_runtime)
    before = utcnow()

    drain(any_runtime)
    shown = view(any_runtime, message_pk)

    assert shown["status"] == "queued"
    assert shown["next_attempt_at"] > before
    assert shown["last_error"]["step"] == "greeting"
    assert shown["last_error"]["reply_code"] == 421
    assert shown["last_error"]["transient"] is True
    assert shown["recipients"][0]["status"] == "deferred"

    for _ in range(any_runtime.settings.max_attempts - 1):
        make_due(any_runtime)
        drain(any_runtime)
    final = view(any_runtime, message_pk)
    assert final["status"] == "failed"
    assert final["attempt_count"] == any_runtime.settings.max_attempts
    assert final["last_error"]["gave_up"].startswith("gave up after")
    assert final["recipients"][0]["status"] == "failed"


def test_rejected_login_holds_until_fixed(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(extensions=["AUTH PLAIN LOGIN"], users={"alice": "right"})
    add_profile(
        any_runtime,
        server.port,
        login="alice",
        password="wrong",
        confirm_password="wrong",
    )
    message_pk = queue(any_runtime)

    drain(any_runtime)
    held = view(any_runtime, message_pk)
    with transaction(any_runtime.sessions) as session:
        profiles.update_profile(
            session,
            any_runtime.secrets,
            "Orders",
            profiles.ProfileInput(password="right", confirm_password="right"),
        )
    drain(any_runtime)
    sent = view(any_runtime, message_pk)

    # A login the server rejects is the profile's fault: the message waits
    # for the fix instead of failing with every other queued message.
    assert held["status"] == "held"
    assert held["attempt_count"] == 1
    assert held["held_reason"].startswith("the profile cannot send: ")
    assert "Check the login and password" in held["held_reason"]
    assert held["last_error"]["id"] == "auth-credentials-rejected"
    assert held["last_error"]["step"] == "auth"
    assert held["recipients"][0]["status"] == "pending"
    assert held["attempts"][0]["outcome"] == "held"
    assert "wrong" not in repr(held)
    assert sent["status"] == "sent"
    assert sent["held_reason"] is None
    assert len(server.messages) == 1


def test_refused_sender_fails_at_once(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(
        replies={
            "MAIL": "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
        }
    )
    add_profile(any_runtime, server.port)
    message_pk = queue(any_runtime)

    drain(any_runtime)

    shown = view(any_runtime, message_pk)
    assert shown["status"] == "failed"
    assert shown["attempt_count"] == 1
    assert shown["last_error"]["step"] == "mail_from"
    assert shown["recipients"][0]["status"] == "failed"


def test_held_message_retried_by_hand(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    from postroom.outbox.actions import retry_message

    server = start_scripted(
        extensions=["AUTH PLAIN LOGIN"],
        replies={
            "AUTH": [
                "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication "
                "is disabled for the Tenant.",
                "235 2.7.0 Authentication successful",
            ]
        },
    )
    add_profile(
        any_runtime, server.port, login="alice", password="pw", confirm_password="pw"
    )
    message_pk = queue(any_runtime)
    drain(any_runtime)
    assert view(any_runtime, message_pk)["status"] == "held"

    # The fix was made at the provider, so the profile itself does not change.
    with transaction(any_runtime.sessions) as session:
        retry_message(session, message_pk)
    drain(any_runtime)

    assert view(any_runtime, message_pk)["status"] == "sent"
    assert len(server.messages) == 1


def test_inactive_profile_holds_then_releases(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    add_profile(any_runtime, server.port, is_active=False)
    message_pk = queue(any_runtime)

    drain(any_runtime)
    held = view(any_runtime, message_pk)
    with transaction(any_runtime.sessions) as session:
        profiles.update_profile(
            session,
            any_runtime.secrets,
            "Orders",
            profiles.ProfileInput(is_active=True),
        )
    drain(any_runtime)

    assert held["status"] == "held"
    assert held["held_reason"] == "email profile 'Orders' is inactive"
    assert view(any_runtime, message_pk)["status"] == "sent"
    assert len(server.handler.messages) == 1


def test_profile_deactivated_after_queueing_holds(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    add_profile(any_runtime, server.port)
    message_pk = queue(any_runtime)
    with transaction(any_runtime.sessions) as session:
        profiles.update_profile(
            session,
            any_runtime.secrets,
            "Orders",
            profiles.ProfileInput(is_active=False),
        )

    drain(any_runtime)

    assert view(any_runtime, message_pk)["status"] == "held"
    assert not server.handler.messages


def test_dropped_after_data_is_retried_with_same_message_id(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(replies={"DATA": [DROP, "250 2.0.0 OK queued as SECOND"]})
    add_profile(any_runtime, server.port)
    message_pk = queue(any_runtime)

    drain(any_runtime)
    first = view(any_runtime, message_pk)
    make_due(any_runtime)
    drain(any_runtime)
    second = view(any_runtime, message_pk)

    assert first["status"] == "queued"
    assert first["last_error"]["step"] == "data"
    assert first["last_error"]["id"] == "disconnected"
    assert second["status"] == "sent"
    assert second["provider_queue_id"] == "SECOND"
    assert second["message_id"] in server.messages[-1].content.decode()


def test_expired_lease_is_claimed_again(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    add_profile(any_runtime, server.port)
    message_pk = queue(any_runtime)

    # A worker claims the message and dies before recording anything.
    claimed, _profiles = store.claim_due(any_runtime.sessions, "dead-worker", 10, 1.0)
    assert [message.id for message in claimed] == [message_pk]
    assert view(any_runtime, message_pk)["status"] == "sending"
    assert store.claim_due(any_runtime.sessions, "other", 10, 60)[0] == []

    asyncio.run(asyncio.sleep(1.2))
    drain(any_runtime)

    assert view(any_runtime, message_pk)["status"] == "sent"
    assert len(server.handler.messages) == 1


def test_concurrent_claims_are_disjoint(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    add_profile(any_runtime, server.port)
    ids = {queue(any_runtime) for _ in range(30)}

    async def claim_many() -> list[list[int]]:
        calls = [
            asyncio.to_thread(
                store.claim_due, any_runtime.sessions, f"worker-{index}", 7, 60
            )
            for index in range(6)
        ]
        results = await asyncio.gather(*calls)
        return [[message.id for message in claimed] for claimed, _profiles in results]

    batches = asyncio.run(claim_many())
    claimed = [message_pk for batch in batches for message_pk in batch]

    assert len(claimed) == len(set(claimed))
    assert set(claimed) <= ids
    assert len(claimed) == 30


def test_rejection_spares_announced_message(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    # One connection sends all three: each next message's commands go out
    # with the last one's final dot, and the server rejects the first.
    server = start_scripted(
        extensions=["PIPELINING"],
        replies={"DATA": ["554 5.6.0 Content rejected", "250 2.0.0 OK queued as N"]},
    )
    add_profile(any_runtime, server.port, max_connections=1)
    first, second, third = (
        queue(any_runtime, to=[f"{name}@example.com"])
        for name in ("first", "second", "third")
    )

    assert drain(any_runtime) == 3

    assert view(any_runtime, first)["status"] == "failed"
    for message_pk in (second, third):
        shown = view(any_runtime, message_pk)
        assert shown["status"] == "sent"
        assert [attempt["outcome"] for attempt in shown["attempts"]] == ["sent"]
    # The rejection closed the connection that carried the second message's
    # commands. It went out again on a new one and was accepted once.
    assert [message.rcpt_tos for message in server.messages] == [
        ["second@example.com"],
        ["third@example.com"],
    ]
    assert server.connections == 2
