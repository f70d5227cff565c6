"""Idempotency keys under concurrent requests, on PostgreSQL.

Two `postroom serve` processes share one PostgreSQL database, as API
servers do when scaled out, and many threads send the same event at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from postroom.api.app import create_app
from postroom.devserver.sink import SinkServer
from postroom.domain.db import ensure_system_profiles, transaction
from postroom.domain.models import OutboxMessage
from postroom.domain.notifications import Event, IdempotencyKey
from postroom.domain.tokens import create_token
from postroom.events.service import EventResult, record_events
from postroom.runtime import Runtime
from tests.conftest import _truncate_all, make_runtime
from tests.notifications import ORDER, add_profile, add_template, event
from tests.peers.service import running_service

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_runtime(
    pg_database_url: str, tmp_path: Path
) -> Iterator[Callable[..., Runtime]]:
    opened: list[Runtime] = []

    def open_pg(**overrides: Any) -> Runtime:
        runtime = make_runtime(tmp_path, pg_database_url, **overrides)
        if not opened:
            _truncate_all(runtime)
            ensure_system_profiles(runtime.sessions)
        opened.append(runtime)
        return runtime

    yield open_pg
    for runtime in opened:
        runtime.close()


def count(runtime: Runtime, model: Any) -> int:
    with transaction(runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def event_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "order.shipped",
        "data": ORDER,
        "idempotency_key": "order-42-shipped",
    }
    body.update(changes)
    return body


def test_racing_requests_queue_once(
    pg_runtime: Callable[..., Runtime],
    tmp_path: Path,
    start_sink: Callable[..., SinkServer],
) -> None:
    runtime = pg_runtime()
    add_profile(runtime, start_sink().port)
    add_template(runtime, name="customer")
    add_template(runtime, name="copy", to=["ops@shop.example"])
    with transaction(runtime.sessions) as session:
        token = create_token(session, "race")
    same = event_body()
    other = event_body(data={**ORDER, "order": {"id": 43, "items": []}})
    bodies = [same] * 20 + [other] * 4
    barrier = threading.Barrier(len(bodies))

    with (
        running_service(runtime, tmp_path / "one", worker=False) as first,
        running_service(runtime, tmp_path / "two", worker=False) as second,
    ):

        def post(index: int) -> httpx.Response:
            base = first if index % 2 else second
            with httpx.Client(
                base_url=base,
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            ) as http:
                barrier.wait(30)
                return http.post("/api/events", json=bodies[index])

        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(post, range(len(bodies))))

    assert count(runtime, Event) == 1
    assert count(runtime, OutboxMessage) == 2
    assert count(runtime, IdempotencyKey) == 1
    with transaction(runtime.sessions) as session:
        stored = session.scalars(select(Event)).one()
        winner = same if stored.data == same["data"] else other
    accepted = [
        answer for answer, body in zip(answers, bodies, strict=True) if body is winner
    ]
    rejected = [
        answer
        for answer, body in zip(answers, bodies, strict=True)
        if body is not winner
    ]
    assert {answer.status_code for answer in accepted} == {202}
    assert len({answer.text for answer in accepted}) == 1
    assert len(accepted[0].json()["message_ids"]) == 2
    assert (
        sum(answer.headers.get("Idempotent-Replayed") == "true" for answer in accepted)
        == len(accepted) - 1
    )
    assert {answer.status_code for answer in rejected} == {422}
    for answer in rejected:
        assert answer.json()["detail"][0]["loc"] == ["body", "idempotency_key"]


def test_racing_threads_in_one_process(
    pg_runtime: Callable[..., Runtime], start_sink: Callable[..., SinkServer]
) -> None:
    runtime = pg_runtime()
    add_profile(runtime, start_sink().port)
    add_template(runtime)

    for round_number in range(5):
        racers = 12
        barrier = threading.Barrier(racers)
        key = f"round-{round_number}"

        def racer(
            _index: int, key: str = key, barrier: threading.Barrier = barrier
        ) -> EventResult:
            barrier.wait(30)
            (result,) = record_events(
                runtime.sessions, runtime.settings, [event(idempotency_key=key)]
            )
            return result

        with ThreadPoolExecutor(racers) as pool:
            results = list(pool.map(racer, range(racers)))

        assert sum(not result.replayed for result in results) == 1
        assert len({result.answer["event_id"] for result in results}) == 1

    assert count(runtime, Event) == 5
    assert count(runtime, OutboxMessage) == 5


def wait_for_lock_waiter(runtime: Runtime) -> None:
    """Return once another backend waits on a lock in this database."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(300):
        with runtime.engine.connect() as connection:
            if connection.scalar(query):
                return
        time.sleep(0.1)
    raise AssertionError("no request started waiting for the idempotency key")


def hold_key(runtime: Runtime, key: str) -> Any:
    """Claim ``key`` in an open transaction, as a request still running would."""
    connection = runtime.engine.connect()
    transaction_handle = connection.begin()
    connection.execute(
        text(
            "INSERT INTO idempotency_keys (key, request_hash, created_at, expires_at) "
            "VALUES (:key, :hash, now(), now() + interval '1 day')"
        ),
        {"key": key, "hash": event(idempotency_key=key).request_hash},
    )
    return connection, transaction_handle


def test_second_request_waits_for_first(
    pg_runtime: Callable[..., Runtime], start_sink: Callable[..., SinkServer]
) -> None:
    runtime = pg_runtime()
    add_profile(runtime, start_sink().port)
    add_template(runtime)
    connection, holder = hold_key(runtime, "k")
    outcome: dict[str, Any] = {}

    def second() -> None:
        outcome["result"] = record_events(
            runtime.sessions, runtime.settings, [event(idempotency_key="k")]
        )[0]

    thread = threading.Thread(target=second)
    thread.start()
    wait_for_lock_waiter(runtime)
    first_answer = {
        "event_id": 0,
        "type": "order.shipped",
        "client": None,
        "message_ids": [],
        "detail": "recorded by the first request",
    }
    connection.execute(
        text(
            "UPDATE idempotency_keys SET answer = CAST(:answer AS json) WHERE key = 'k'"
        ),
        {"answer": json.dumps(first_answer)},
    )
    holder.commit()
    connection.close()
    thread.join(30)

    assert outcome["result"].replayed is True
    assert outcome["result"].answer == first_answer
    assert count(runtime, OutboxMessage) == 0


def test_still_processing_gets_409(
    pg_runtime: Callable[..., Runtime], start_sink: Callable[..., SinkServer]
) -> None:
    runtime = pg_runtime(idempotency_wait_seconds=0.5)
    add_profile(runtime, start_sink().port)
    add_template(runtime)
    with transaction(runtime.sessions) as session:
        token = create_token(session, "tests")
    connection, holder = hold_key(runtime, "order-42-shipped")

    with TestClient(create_app(runtime)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        busy = client.post("/api/events", json=event_body())
        holder.rollback()
        connection.close()
        retried = client.post("/api/events", json=event_body())

    assert busy.status_code == 409
    assert busy.json()["detail"][0]["loc"] == ["body", "idempotency_key"]
    assert "still being processed" in busy.json()["detail"][0]["msg"]
    assert retried.status_code == 202
    assert len(retried.json()["message_ids"]) == 1
    assert count(runtime, OutboxMessage) == 1
