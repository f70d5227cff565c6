"""Workers as real processes: limits across them, wakeups, SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from postroom.clock import utcnow
from postroom.devserver.sink import free_port
from postroom.domain.db import transaction
from postroom.domain.models import OutboxMessage
from postroom.runtime import Runtime
from tests.outbox.helpers import add_profile, queue, view, wait_for
from tests.outbox.processes import Process, process_env, wait_for_port
from tests.peers.scripted import Delay, ScriptedServer


def rows(runtime: Runtime) -> list[OutboxMessage]:
    with transaction(runtime.sessions) as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


@pytest.mark.postgres
def test_limits_hold_across_worker_processes(
    pg_runtime: Runtime, start_scripted: Callable[..., ScriptedServer], tmp_path: Path
) -> None:
    server = start_scripted(replies={"DATA": Delay(0.05, "250 2.0.0 OK queued as X")})
    add_profile(pg_runtime, server.port, max_connections=2, max_messages_per_day=25)
    for _ in range(40):
        queue(pg_runtime)
    tomorrow = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow += timedelta(days=1)
    env = process_env(
        pg_runtime, tmp_path / "data", worker_concurrency=4, worker_poll_seconds=0.2
    )
    workers = [
        Process(["worker"], env, tmp_path / f"worker-{index}.log") for index in range(3)
    ]
    try:
        wait_for(lambda: [m.status for m in rows(pg_runtime)].count("sent") == 25)
        # The other 15 wait for tomorrow's quota, claimed by no worker.
        wait_for(lambda: [m.status for m in rows(pg_runtime)].count("queued") == 15)
    finally:
        codes = [worker.stop() for worker in workers]

    messages = rows(pg_runtime)
    assert codes == [0, 0, 0]
    assert len(server.messages) == 25
    assert server.max_active == 2
    for message in messages:
        if message.status == "queued":
            assert message.attempt_count == 0
            assert message.next_attempt_at >= tomorrow
    assert {m.lease_owner for m in messages if m.status == "sent"} == {None}


@pytest.mark.postgres
def test_notify_wakes_worker_in_other_process(
    pg_runtime: Runtime, start_scripted: Callable[..., ScriptedServer], tmp_path: Path
) -> None:
    server = start_scripted()
    add_profile(pg_runtime, server.port)
    # With an hour between polls, only a NOTIFY can bring the messages.
    env = process_env(pg_runtime, tmp_path / "data", worker_poll_seconds=3600)
    worker = Process(["worker"], env, tmp_path / "worker.log")
    try:
        wait_for(lambda: "delivery worker started" in worker.output)
        first = queue(pg_runtime)
        wait_for(lambda: view(pg_runtime, first)["status"] == "sent")
        second = queue(pg_runtime)
        wait_for(lambda: view(pg_runtime, second)["status"] == "sent")
    finally:
        assert worker.stop() == 0

    assert len(server.messages) == 2


def _start_slow_delivery(
    runtime: Runtime,
    start_scripted: Callable[..., ScriptedServer],
    data_delay: float,
) -> tuple[ScriptedServer, list[int]]:
    server = start_scripted(
        replies={"DATA": Delay(data_delay, "250 2.0.0 OK queued as SLOW")}
    )
    add_profile(runtime, server.port, max_connections=1, command_timeout=10.0)
    ids = [queue(runtime) for _ in range(4)]
    return server, ids


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_sigterm_finishes_message_in_flight(
    runtime: Runtime,
    start_scripted: Callable[..., ScriptedServer],
    tmp_path: Path,
    command: str,
) -> None:
    server, ids = _start_slow_delivery(runtime, start_scripted, data_delay=1.0)
    env = process_env(
        runtime, tmp_path / "data", worker_concurrency=1, shutdown_timeout_seconds=20
    )
    args = [command]
    if command == "serve":
        port = free_port()
        args += ["--port", str(port)]
    process = Process(args, env, tmp_path / f"{command}.log")
    if command == "serve":
        wait_for_port(port)

    wait_for(lambda: "DATA" in server.commands)
    process.signal(signal.SIGTERM)
    code = process.wait(30)

    shown = [view(runtime, pk) for pk in ids]
    # uvicorn re-raises the signal once it has shut down gracefully.
    assert code in (0, -signal.SIGTERM), process.output
    assert "delivery worker stopped" in process.output
    assert shown[0]["status"] == "sent"
    assert len(server.messages) == 1
    for message in shown[1:]:
        assert message["status"] == "queued"
        assert message["attempt_count"] == 0
    assert {m.lease_owner for m in rows(runtime)} == {None}


def test_sigterm_deadline_gives_message_back(
    runtime: Runtime, start_scripted: Callable[..., ScriptedServer], tmp_path: Path
) -> None:
    server, ids = _start_slow_delivery(runtime, start_scripted, data_delay=5.0)
    env = process_env(
        runtime, tmp_path / "data", worker_concurrency=1, shutdown_timeout_seconds=0.2
    )
    process = Process(["worker"], env, tmp_path / "worker.log")

    wait_for(lambda: "DATA" in server.commands)
    process.signal(signal.SIGTERM)
    code = process.wait(30)

    shown = [view(runtime, pk) for pk in ids]
    assert code == 0, process.output
    assert "shutdown deadline reached" in process.output
    assert [message["status"] for message in shown] == ["queued"] * 4
    assert [message["attempt_count"] for message in shown] == [0] * 4
    assert {m.lease_owner for m in rows(runtime)} == {None}


def test_worker_serves_metrics(
    runtime: Runtime, start_scripted: Callable[..., ScriptedServer], tmp_path: Path
) -> None:
    server = start_scripted()
    add_profile(runtime, server.port)
    message_pk = queue(runtime)
    port = free_port()
    env = process_env(runtime, tmp_path / "data")
    worker = Process(["worker", "--metrics-port", str(port)], env, tmp_path / "w.log")
    try:
        wait_for(lambda: view(runtime, message_pk)["status"] == "sent")
        wait_for_port(port)
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        assert worker.stop() == 0

    assert answer.status_code == 200
    assert 'postroom_messages{profile="Orders",status="sent"} 1.0' in answer.text
    assert (
        'postroom_delivery_attempts_total{outcome="sent",profile="Orders"} 1.0'
        in answer.text
    )
    assert 'postroom_pool_connections{profile="Orders",state="idle"} 1.0' in answer.text
