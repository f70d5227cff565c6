"""The delivery engine in one process: pools, limits, splitting, faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from postroom.clock import utcnow
from postroom.domain.db import transaction
from postroom.domain.models import MessageStatus, OutboxMessage
from postroom.domain.usage import ProfileUsage
from postroom.outbox.store import Outcome
from postroom.outbox.worker import Worker
from postroom.runtime import Runtime
from tests.conftest import make_runtime
from tests.outbox.helpers import (
    BackgroundWorker,
    add_profile,
    drain,
    queue,
    view,
    wait_for,
)
from tests.peers.certs import Certificates
from tests.peers.scripted import DROP, Delay, Raw, ScriptedServer


def make_due(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status == MessageStatus.QUEUED)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


def statuses(runtime: Runtime) -> dict[str, int]:
    with transaction(runtime.sessions) as session:
        counts: dict[str, int] = {}
        for status in session.scalars(select(OutboxMessage.status)):
            counts[status] = counts.get(status, 0) + 1
        return counts


def test_pool_reuses_one_connection(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted()
    add_profile(any_runtime, server.port, max_connections=1)
    ids = [queue(any_runtime) for _ in range(5)]

    assert drain(any_runtime) == 5

    assert [view(any_runtime, pk)["status"] for pk in ids] == ["sent"] * 5
    assert len(server.messages) == 5
    assert server.connections == 1
    assert server.commands.count("QUIT") == 1


def test_profile_sends_concurrently_within_limit(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(replies={"DATA": Delay(0.1, "250 2.0.0 OK queued as X")})
    add_profile(any_runtime, server.port, max_connections=3)
    for _ in range(12):
        queue(any_runtime)

    drain(any_runtime)

    assert statuses(any_runtime) == {"sent": 12}
    assert server.max_active == 3
    assert server.connections == 3


def test_server_closing_idle_connection_is_reopened(
    runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted()
    add_profile(runtime, server.port, max_connections=1)

    with BackgroundWorker(runtime):
        first = queue(runtime)
        wait_for(lambda: view(runtime, first)["status"] == "sent")
        server.drop_connections()
        second = queue(runtime)
        wait_for(lambda: view(runtime, second)["status"] == "sent")

    shown = view(runtime, second)
    assert shown["attempt_count"] == 1
    assert [attempt["outcome"] for attempt in shown["attempts"]] == ["sent"]
    assert server.connections == 2
    assert len(server.messages) == 2


def test_421_on_reused_connection_retried(
    runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    # The second MAIL FROM meets a server that timed the connection out
    # without the client noticing; it replies 421 and hangs up.
    server = start_scripted(
        replies={
            "MAIL": [
                "250 2.1.0 Sender OK",
                "421 4.4.2 Connection idle too long, closing",
                "250 2.1.0 Sender OK",
            ]
        }
    )
    add_profile(runtime, server.port, max_connections=1)

    with BackgroundWorker(runtime):
        first = queue(runtime)
        wait_for(lambda: view(runtime, first)["status"] == "sent")
        second = queue(runtime)
        wait_for(lambda: view(runtime, second)["status"] == "sent")

    shown = view(runtime, second)
    assert shown["attempt_count"] == 1
    assert shown["last_error"] is None
    assert server.connections == 2


def test_421_in_mid_session_defers_then_sends(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(
        replies={
            "RCPT": [
                "421 4.7.0 Too many messages, closing connection",
                "250 2.1.5 OK",
            ]
        }
    )
    add_profile(any_runtime, server.port)
    message_pk = queue(any_runtime)

    drain(any_runtime)
    first = view(any_runtime, message_pk)
    make_due(any_runtime)
    drain(any_runtime)
    second = view(any_runtime, message_pk)

    assert first["status"] == "queued"
    assert first["recipients"][0]["status"] == "deferred"
    assert first["recipients"][0]["reply_code"] == 421
    assert first["attempts"][0]["outcome"] == "deferred"
    assert first["attempts"][0]["reply_code"] == 421
    assert first["attempts"][0]["enhanced_status"] == "4.7.0"
    assert first["last_error"]["transient"] is True
    assert second["status"] == "sent"
    assert [a["outcome"] for a in second["attempts"]] == ["deferred", "sent"]


def test_greeting_delayed_past_timeout_defers(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(greeting=Delay(3.0, "220 slow.test ESMTP"))
    add_profile(any_runtime, server.port, connect_timeout=0.5)
    message_pk = queue(any_runtime)

    drain(any_runtime)

    shown = view(any_runtime, message_pk)
    assert shown["status"] == "queued"
    assert shown["attempt_count"] == 1
    assert shown["last_error"]["id"] == "greeting-timeout"
    assert shown["attempts"][0]["step"] == "greeting"
    assert shown["attempts"][0]["outcome"] == "deferred"
    assert not server.messages


def test_data_reply_delayed_within_timeout_is_sent(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(replies={"DATA": Delay(0.5, "250 2.0.0 OK queued as LATE")})
    add_profile(any_runtime, server.port, command_timeout=5.0)
    message_pk = queue(any_runtime)

    drain(any_runtime)

    shown = view(any_runtime, message_pk)
    assert shown["status"] == "sent"
    assert shown["provider_queue_id"] == "LATE"


def test_reply_with_invalid_utf8_is_recorded(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    # JSON and SQLite reject the surrogates that Python's surrogateescape
    # leaves for such a byte, and an outcome that cannot be stored would
    # hold up every later one.
    server = start_scripted(
        replies={"DATA": Raw(b"250 2.0.0 Ok: queued as ABC \xff\r\n")}
    )
    add_profile(any_runtime, server.port)
    message_pk = queue(any_runtime)

    async def drain_within_limit() -> int:
        return await asyncio.wait_for(Worker(any_runtime).drain(), 30)

    attempts = asyncio.run(drain_within_limit())

    shown = view(any_runtime, message_pk)
    assert attempts == 1
    assert shown["status"] == "sent"
    assert shown["attempts"][0]["reply_text"] == "2.0.0 Ok: queued as ABC \\xff"


def test_data_reply_delayed_past_timeout_is_retried(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(
        replies={
            "DATA": [
                Delay(3.0, "250 2.0.0 OK queued as TOO-LATE"),
                "250 2.0.0 OK queued as SECOND",
            ]
        }
    )
    add_profile(any_runtime, server.port, command_timeout=0.5)
    message_pk = queue(any_runtime)

    drain(any_runtime)
    first = view(any_runtime, message_pk)
    make_due(any_runtime)
    drain(any_runtime)
    second = view(any_runtime, message_pk)

    # The server may have accepted the first copy after the client gave up:
    # at least once, with the same Message-ID.
    assert first["status"] == "queued"
    assert first["attempts"][0]["step"] == "data"
    assert first["last_error"]["id"] == "timeout"
    assert second["status"] == "sent"
    assert second["provider_queue_id"] == "SECOND"
    assert second["message_id"] in server.messages[-1].content.decode()


def test_drop_after_data_records_disconnect(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(replies={"DATA": [DROP, "250 2.0.0 OK queued as AGAIN"]})
    # One connection, so the first message is the one whose DATA is dropped.
    add_profile(any_runtime, server.port, max_connections=1)
    first_pk = queue(any_runtime)
    second_pk = queue(any_runtime)

    drain(any_runtime)

    first = view(any_runtime, first_pk)
    second = view(any_runtime, second_pk)
    # The drop ends the connection; the next message goes out on a new one.
    assert first["status"] == "queued"
    assert first["attempts"][0]["step"] == "data"
    assert first["last_error"]["id"] == "disconnected"
    assert second["status"] == "sent"
    assert server.connections == 2


def test_tls_failure_on_reconnect_is_recorded(
    runtime: Runtime,
    start_scripted: Callable[..., ScriptedServer],
    certificates: Certificates,
) -> None:
    server = start_scripted(tls=True)
    add_profile(
        runtime,
        server.port,
        security="starttls",
        ca_bundle=str(certificates.ca_file),
        max_connections=1,
    )

    with BackgroundWorker(runtime):
        first = queue(runtime)
        wait_for(lambda: view(runtime, first)["status"] == "sent")
        # The server now presents a certificate from a CA the profile does not trust, and
        # drops the pooled connection, so the next message must reconnect.
        server.tls_context = certificates.untrusted.server_context()
        server.drop_connections()
        second = queue(runtime)
        wait_for(lambda: view(runtime, second)["attempt_count"] == 1)

    shown = view(runtime, second)
    assert shown["status"] == "held"
    assert shown["attempts"][0]["step"] == "starttls"
    assert shown["last_error"]["id"] == "certificate-untrusted"
    assert shown["recipients"][0]["status"] == "pending"
    assert len(server.messages) == 1


def test_recipients_split_into_transactions(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted()
    add_profile(any_runtime, server.port, max_recipients_per_message=2)
    recipients = [f"r{index}@example.com" for index in range(5)]
    message_pk = queue(any_runtime, to=recipients)

    drain(any_runtime)

    shown = view(any_runtime, message_pk)
    assert shown["status"] == "sent"
    assert shown["attempt_count"] == 1
    assert [r["status"] for r in shown["recipients"]] == ["accepted"] * 5
    assert [m.rcpt_tos for m in server.messages] == [
        recipients[0:2],
        recipients[2:4],
        recipients[4:5],
    ]
    assert len({m.content for m in server.messages}) == 1


def test_split_failure_defers_own_recipients(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(
        replies={"DATA": ["250 2.0.0 OK queued as ONE", "451 4.3.0 Try later"]}
    )
    add_profile(any_runtime, server.port, max_recipients_per_message=1)
    message_pk = queue(any_runtime, to=["a@example.com", "b@example.com"])

    drain(any_runtime)

    shown = view(any_runtime, message_pk)
    by_address = {r["address"]: r for r in shown["recipients"]}
    assert shown["status"] == "queued"
    assert by_address["a@example.com"]["status"] == "accepted"
    assert by_address["b@example.com"]["status"] == "deferred"
    assert by_address["b@example.com"]["reply_code"] == 451
    assert shown["attempts"][0]["step"] == "data"
    assert shown["attempts"][0]["reply_code"] == 451


def test_rate_limit_makes_messages_wait(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted()
    add_profile(any_runtime, server.port, max_messages_per_day=3)
    ids = [queue(any_runtime) for _ in range(5)]
    before = utcnow()

    drain(any_runtime)

    shown = [view(any_runtime, pk) for pk in ids]
    waiting = [message for message in shown if message["status"] == "queued"]
    tomorrow = before.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
        days=1
    )
    assert len(server.messages) == 3
    assert [message["status"] for message in shown].count("sent") == 3
    assert len(waiting) == 2
    for message in waiting:
        assert message["attempt_count"] == 0
        assert message["last_error"] is None
        assert message["next_attempt_at"] >= tomorrow
    with transaction(any_runtime.sessions) as session:
        used = session.scalar(
            select(ProfileUsage.used).where(ProfileUsage.period == "day")
        )
    assert used == 3


def test_rate_limit_counts_each_split_transaction(
    runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted()
    add_profile(
        runtime, server.port, max_messages_per_day=2, max_recipients_per_message=2
    )
    first = queue(runtime, to=["a@example.com", "b@example.com", "c@example.com"])
    second = queue(runtime, to=["d@example.com", "e@example.com"])

    drain(runtime)

    assert view(runtime, first)["status"] == "sent"
    assert view(runtime, second)["status"] == "queued"
    assert len(server.messages) == 2


def test_claims_continue_while_commits_wait(
    tmp_path: Path,
    start_scripted: Callable[..., ScriptedServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each sender may run 10 messages ahead of its commits, so a worker
    # whose commits are slow still claims and sends beyond its batches.
    runtime = make_runtime(
        tmp_path,
        None,
        worker_batch_size=2,
        worker_concurrency=1,
        worker_unrecorded_per_connection=10,
    )
    try:
        server = start_scripted()
        add_profile(runtime, server.port, max_connections=1)
        ids = [queue(runtime) for _ in range(6)]

        async def send_with_commits_held() -> int:
            worker = Worker(runtime)
            record = worker._call.record_outcomes
            commits = asyncio.Event()

            async def held(outcomes: list[Outcome], worker_id: str) -> None:
                await commits.wait()
                await record(outcomes, worker_id)

            monkeypatch.setattr(worker._call, "record_outcomes", held)
            draining = asyncio.create_task(worker.drain())
            # Less than the worker's poll interval: claims must follow the
            # senders, not the clock.
            deadline = time.monotonic() + 0.8
            while len(server.messages) < len(ids) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            sent_before_any_commit = len(server.messages)
            commits.set()
            await draining
            return sent_before_any_commit

        sent_before_any_commit = asyncio.run(send_with_commits_held())

        assert sent_before_any_commit == len(ids)
        assert [view(runtime, pk)["status"] for pk in ids] == ["sent"] * len(ids)
    finally:
        runtime.close()
