"""The scheduler with an injected clock: due slots, DST changes, missed and
overlapping runs, abandoned leases."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from postroom.devserver.sink import SinkServer
from postroom.domain.scheduling import Job, JobRun
from postroom.errors import ConflictError
from postroom.runtime import Runtime
from postroom.schedule.runs import start_manual_run
from postroom.schedule.scheduler import Scheduler
from tests.schedule.helpers import (
    FakeClock,
    add_job,
    job_runtime,
    point_profile,
    utc,
)


def runs_of(runtime: Runtime, name: str) -> list[JobRun]:
    with runtime.sessions() as session:
        return list(
            session.scalars(
                select(JobRun).where(JobRun.job_name == name).order_by(JobRun.id)
            )
        )


def step_through(scheduler: Scheduler, clock: FakeClock, until: datetime) -> None:
    """Tick once a minute, running what is due, as the loop would."""
    while clock.now < until:
        scheduler.run_due()
        clock.advance(minutes=1)


@pytest.fixture
def delivering(jobs_runtime: Runtime, start_sink: Callable[..., SinkServer]) -> Runtime:
    point_profile(jobs_runtime, start_sink().port)
    return jobs_runtime


def test_nothing_runs_before_slot(delivering: Runtime) -> None:
    clock = FakeClock(utc(2026, 5, 4, 11, 0))
    add_job(delivering, clock.now, cron="1 7 * * *")
    scheduler = Scheduler(delivering, clock=clock)

    clock.now = utc(2026, 5, 4, 12, 0, 59)
    assert scheduler.run_due() == []

    clock.now = utc(2026, 5, 4, 12, 1)
    results = scheduler.run_due()
    assert [result.outcome for result in results] == ["succeeded"]
    assert scheduler.run_due() == []


def test_spring_change_runs_once_after_gap(delivering: Runtime) -> None:
    clock = FakeClock(utc(2026, 3, 7, 12, 0))
    add_job(delivering, clock.now, cron="30 2 * * *")
    scheduler = Scheduler(delivering, clock=clock)

    clock.now = utc(2026, 3, 8, 5, 0)
    step_through(scheduler, clock, utc(2026, 3, 8, 11, 0))

    runs = runs_of(delivering, "Open orders")
    assert [run.scheduled_for for run in runs] == [utc(2026, 3, 8, 8, 0)]
    assert runs[0].started_at == utc(2026, 3, 8, 8, 0)
    assert runs[0].outcome == "succeeded"


def test_autumn_change_runs_once_at_first(delivering: Runtime) -> None:
    clock = FakeClock(utc(2026, 10, 31, 12, 0))
    add_job(delivering, clock.now, cron="30 1 * * *")
    scheduler = Scheduler(delivering, clock=clock)

    clock.now = utc(2026, 11, 1, 5, 0)
    # Through both passes of 01:00-02:00 local (06:00-08:00 UTC).
    step_through(scheduler, clock, utc(2026, 11, 1, 9, 0))

    runs = runs_of(delivering, "Open orders")
    assert [run.scheduled_for for run in runs] == [utc(2026, 11, 1, 6, 30)]


def test_autumn_interval_keeps_real_interval(delivering: Runtime) -> None:
    clock = FakeClock(utc(2026, 11, 1, 4, 59))
    add_job(delivering, clock.now, cron="*/15 * * * *", format="html")
    scheduler = Scheduler(delivering, clock=clock)

    clock.now = utc(2026, 11, 1, 5, 0)
    step_through(scheduler, clock, utc(2026, 11, 1, 9, 0))

    slots = [run.scheduled_for for run in runs_of(delivering, "Open orders")]
    assert len(slots) == 16
    assert slots[0] == utc(2026, 11, 1, 5, 0)
    assert {b - a for a, b in itertools.pairwise(slots)} == {timedelta(minutes=15)}


def test_missed_slots_catch_up_once(tmp_path: Path, sales_db: Path) -> None:
    runtime = job_runtime(tmp_path, None, sales_db, scheduler_grace_seconds=1800)
    clock = FakeClock(utc(2026, 5, 4, 0, 0))
    add_job(runtime, clock.now, cron="0 * * * *", time_zone="UTC")
    scheduler = Scheduler(runtime, clock=clock)

    # Down from 00:00 until 05:10: five slots passed, the 05:00 one 10 min ago.
    clock.now = utc(2026, 5, 4, 5, 10)
    claimed = scheduler.claim_due()

    assert [run.scheduled_for for run in claimed] == [utc(2026, 5, 4, 5, 0)]
    runs = runs_of(runtime, "Open orders")
    missed = [run for run in runs if run.outcome == "missed"]
    assert [run.scheduled_for for run in missed] == [
        utc(2026, 5, 4, hour, 0) for hour in range(1, 5)
    ]
    assert missed[0].diagnosis is not None
    assert "not running" in missed[0].diagnosis["cause"]
    with runtime.sessions() as session:
        job = session.scalars(select(Job)).one()
        assert job.next_run_at == utc(2026, 5, 4, 6, 0)
    runtime.close()


def test_run_past_grace_is_missed(tmp_path: Path, sales_db: Path) -> None:
    runtime = job_runtime(tmp_path, None, sales_db, scheduler_grace_seconds=1800)
    clock = FakeClock(utc(2026, 5, 4, 0, 0))
    add_job(runtime, clock.now, run_at="2026-05-04T07:00", time_zone="UTC")
    scheduler = Scheduler(runtime, clock=clock)

    clock.now = utc(2026, 5, 4, 8, 0)
    claimed = scheduler.claim_due()

    assert claimed == []
    runs = runs_of(runtime, "Open orders")
    assert [run.outcome for run in runs] == ["missed"]
    assert runs[0].error is not None
    assert "60 minutes late, more than the grace period of 30 minutes" in runs[0].error
    with runtime.sessions() as session:
        assert session.scalars(select(Job.next_run_at)).one() is None
    runtime.close()


def test_slot_while_running_is_skipped(delivering: Runtime) -> None:
    clock = FakeClock(utc(2026, 5, 4, 11, 59))
    add_job(delivering, clock.now, cron="0 7 * * *")
    manual = start_manual_run(
        delivering.sessions, "Open orders", owner="elsewhere", now=clock.now, lease=600
    )
    scheduler = Scheduler(delivering, clock=clock)

    clock.now = utc(2026, 5, 4, 12, 0)
    assert scheduler.claim_due() == []

    runs = runs_of(delivering, "Open orders")
    assert [run.outcome for run in runs] == ["running", "skipped"]
    assert runs[1].error is not None
    assert f"previous run ({manual.run_pk}) was still running" in runs[1].error


def test_second_run_now_is_refused(delivering: Runtime) -> None:
    clock = FakeClock(utc(2026, 5, 4, 11, 0))
    add_job(delivering, clock.now)
    first = start_manual_run(
        delivering.sessions, "Open orders", owner="one", now=clock.now, lease=600
    )

    with pytest.raises(ConflictError) as caught:
        start_manual_run(
            delivering.sessions, "Open orders", owner="two", now=clock.now, lease=600
        )

    assert f"already running (run {first.run_pk}" in caught.value.message
    assert len(runs_of(delivering, "Open orders")) == 1


def test_run_now_claims_are_exclusive(any_jobs_runtime: Runtime) -> None:
    # Eight threads, each with its own connection, race for the lease.
    clock = FakeClock(utc(2026, 5, 4, 11, 0))
    add_job(any_jobs_runtime, clock.now)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def race(owner: str) -> None:
        barrier.wait()
        try:
            start_manual_run(
                any_jobs_runtime.sessions,
                "Open orders",
                owner=owner,
                now=clock.now,
                lease=600,
            )
            outcomes.append("claimed")
        except ConflictError:
            outcomes.append("refused")

    threads = [threading.Thread(target=race, args=(f"t{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["claimed"] + ["refused"] * 7
    assert len(runs_of(any_jobs_runtime, "Open orders")) == 1


def test_abandoned_run_is_failed_and_freed(delivering: Runtime) -> None:
    clock = FakeClock(utc(2026, 5, 4, 11, 0))
    add_job(delivering, clock.now)
    dead = start_manual_run(
        delivering.sessions, "Open orders", owner="dead", now=clock.now, lease=60
    )

    clock.advance(minutes=2)
    again = start_manual_run(
        delivering.sessions, "Open orders", owner="alive", now=clock.now, lease=60
    )

    runs = {run.id: run for run in runs_of(delivering, "Open orders")}
    assert runs[dead.run_pk].outcome == "failed"
    assert runs[dead.run_pk].diagnosis is not None
    assert runs[dead.run_pk].diagnosis["id"] == "run-abandoned"
    assert runs[again.run_pk].outcome == "running"


def test_inactive_job_does_not_run(delivering: Runtime) -> None:
    clock = FakeClock(utc(2026, 5, 4, 11, 0))
    job = add_job(delivering, clock.now, is_active=False)
    scheduler = Scheduler(delivering, clock=clock)

    clock.advance(days=2)

    assert job.next_run_at is None
    assert scheduler.run_due() == []


def test_loop_runs_due_job(delivering: Runtime) -> None:
    clock = FakeClock(utc(2026, 5, 4, 11, 59, 59))
    add_job(delivering, clock.now, cron="0 7 * * *")
    scheduler = Scheduler(delivering, clock=clock)

    async def main() -> None:
        stop = asyncio.Event()
        loop_task = asyncio.create_task(scheduler.run(stop))
        await asyncio.sleep(0.3)
        assert runs_of(delivering, "Open orders") == []
        clock.advance(seconds=1)
        for _ in range(200):
            runs = runs_of(delivering, "Open orders")
            if runs and runs[0].outcome != "running":
                break
            await asyncio.sleep(0.05)
        stop.set()
        await loop_task

    asyncio.run(main())

    runs = runs_of(delivering, "Open orders")
    assert [run.outcome for run in runs] == ["succeeded"]
    assert runs[0].worker == scheduler.owner
