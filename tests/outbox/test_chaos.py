"""Chaos: workers killed with SIGKILL mid-delivery lose no message.

Two `postroom worker` processes share PostgreSQL and deliver 2,000 messages
to a sink in a third process; one worker is killed at random moments and
started again. Each worker sends over one connection and lets the sink
accept a message only once the previous outcome is committed, so a kill
can leave at most one message accepted but not yet recorded, and that
message is sent again with the same Message-ID.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from postroom.domain.db import transaction
from postroom.domain.models import MessageStatus, OutboxMessage
from postroom.mime.build import MessageDraft, build_message
from postroom.outbox.queue import store_message
from postroom.runtime import Runtime
from tests.outbox.helpers import add_profile, wait_for
from tests.outbox.processes import Process, process_env, start_sink_process

MESSAGES = 2000
KILLS = 5


def queue_many(runtime: Runtime, count: int) -> set[str]:
    message_ids = set()
    with transaction(runtime.sessions) as session:
        for index in range(count):
            built = build_message(
                MessageDraft(
                    sender="orders@example.com",
                    to=[f"customer{index}@example.com"],
                    subject=f"Order {index} shipped",
                    text=f"Parcel {index} is on its way.",
                )
            )
            store_message(session, built, "Orders", source="test")
            message_ids.add(built.message_id)
    return message_ids


def count_sent(runtime: Runtime) -> int:
    with transaction(runtime.sessions) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == MessageStatus.SENT)
            )
            or 0
        )


def received_message_ids(folder: Path) -> Counter[str]:
    lines = (folder / "index.jsonl").read_text().splitlines()
    return Counter(json.loads(line)["message_id"] for line in lines)


@pytest.mark.postgres
def test_killed_worker_loses_nothing(pg_runtime: Runtime, tmp_path: Path) -> None:
    seed = int(os.environ.get("POSTROOM_CHAOS_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    env = process_env(
        pg_runtime,
        tmp_path / "data",
        log_level="WARNING",
        worker_concurrency=1,
        worker_unrecorded_per_connection=1,
        worker_batch_size=10,
        worker_poll_seconds=0.2,
        lease_seconds=4,
    )
    sink_folder = tmp_path / "sink"
    sink, port = start_sink_process(
        sink_folder, env, tmp_path / "sink.log", data_delay_ms=3
    )
    add_profile(pg_runtime, port, max_connections=4)
    expected = queue_many(pg_runtime, MESSAGES)

    steady = Process(["worker"], env, tmp_path / "steady.log")
    victim = Process(["worker"], env, tmp_path / "victim-0.log")
    kills = 0
    try:
        while kills < KILLS and count_sent(pg_runtime) < MESSAGES:
            time.sleep(rng.uniform(0.3, 1.5))
            victim.popen.kill()
            victim.wait(10)
            kills += 1
            victim = Process(["worker"], env, tmp_path / f"victim-{kills}.log")
        wait_for(lambda: count_sent(pg_runtime) == MESSAGES, timeout=120)
    finally:
        codes = [steady.stop(), victim.stop()]
        sink.stop()

    received = received_message_ids(sink_folder)
    duplicates = sum(count - 1 for count in received.values())
    context = f"seed {seed}, {kills} kills, {duplicates} duplicates"
    print(context)
    assert codes == [0, 0], context
    assert kills == KILLS, context
    assert set(received) == expected, context
    assert duplicates <= kills, context
