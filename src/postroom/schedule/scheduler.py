"""The scheduler: find due jobs, decide what each due slot gets, run them.

Every job row holds its next slot (``next_run_at``). When a slot comes due
the scheduler, in one transaction, moves ``next_run_at`` on to the first
slot after now (a compare-and-set, so one process wins each slot) and:

- runs the latest due slot if it is less than the grace period late,
  or records it as missed otherwise;
- records every earlier due slot as missed: after an outage a job catches
  up once, not once per slot it slept through;
- records the slot as skipped if the previous run still holds the lease.

The runs themselves execute in threads, at most ``max_concurrent_runs`` at
a time, after the transaction has committed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from postroom.clock import utcnow
from postroom.domain.db import transaction
from postroom.domain.scheduling import Job, RunOutcome, RunTrigger
from postroom.errors import InvalidInputError
from postroom.runtime import Runtime
from postroom.schedule.cron import Occurrence
from postroom.schedule.jobs import schedule_of
from postroom.schedule.leadership import Leadership, leadership_for
from postroom.schedule.runner import Runner, RunResult
from postroom.schedule.runs import (
    ClaimedRun,
    lease_seconds,
    record_run,
    recover_abandoned,
    start_run,
)

log = logging.getLogger("postroom.scheduler")

# Missed slots recorded one by one per catch-up; an outage longer than this
# many slots is summarised on the oldest row recorded.
MAX_MISSED_RECORDED = 100
_MIN_WAIT_SECONDS = 0.05
# Slots counted before skipping ahead, for frequent jobs after long outages.
_MAX_SLOTS_COUNTED = 10_000


def new_scheduler_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _missed_diagnosis(cause: str, fix: str) -> dict[str, object]:
    return {
        "id": "run-missed",
        "step": "schedule",
        "cause": cause,
        "fix": fix,
        "error": None,
    }


class Scheduler:
    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
        leadership: Leadership | None = None,
        max_concurrent_runs: int = 4,
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self.owner = owner or new_scheduler_id()
        self.leadership = leadership or leadership_for(runtime.engine)
        self.max_concurrent_runs = max_concurrent_runs
        self.cancel = threading.Event()
        self.runner = Runner(runtime, clock=clock, cancel=self.cancel)

    # The synchronous core, used by the loop and directly by tests.

    def claim_due(self, limit: int | None = None) -> list[ClaimedRun]:
        """Settle every due slot up to ``limit`` jobs; return the runs to execute."""
        now = self.clock()
        recover_abandoned(self.runtime.sessions, now)
        settings = self.runtime.settings
        grace = timedelta(seconds=settings.scheduler_grace_seconds)
        lease = lease_seconds(settings)
        claimed: list[ClaimedRun] = []
        with transaction(self.runtime.sessions) as session:
            query = (
                select(Job)
                .where(
                    Job.is_active.is_(True),
                    Job.next_run_at.is_not(None),
                    Job.next_run_at <= now,
                )
                .order_by(Job.next_run_at, Job.id)
            )
            if limit is not None:
                query = query.limit(limit)
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            for job in list(session.scalars(query)):
                run = self._settle(session, job, now, grace, lease)
                if run is not None:
                    claimed.append(run)
        return claimed

    def run_due(self) -> list[RunResult]:
        """Claim what is due and execute it here, one run after another."""
        return [self.runner.execute(run) for run in self.claim_due()]

    def next_due(self) -> datetime | None:
        with self.runtime.sessions() as session:
            return session.scalar(
                select(func.min(Job.next_run_at)).where(Job.is_active.is_(True))
            )

    def _settle(
        self,
        session: Session,
        job: Job,
        now: datetime,
        grace: timedelta,
        lease: float,
    ) -> ClaimedRun | None:
        assert job.next_run_at is not None
        first = job.next_run_at
        try:
            schedule = schedule_of(job)
            slots, count = self._due_slots(job, now)
            upcoming: Occurrence | None = schedule.next_after(now)
        except InvalidInputError as exc:
            # The zone or expression no longer works (a tz database update):
            # stop scheduling the job rather than fail every round.
            log.error(
                "cannot compute the job's schedule; deactivating it",
                extra={"job": job.name, "error": str(exc)},
            )
            session.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(is_active=False, next_run_at=None)
                .execution_options(synchronize_session=False)
            )
            return None

        moved = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.next_run_at == first)
            .values(next_run_at=upcoming.utc if upcoming is not None else None)
            .execution_options(synchronize_session=False)
        )
        if getattr(moved, "rowcount", 0) != 1:
            # Another scheduler settled this slot first.
            return None

        latest = slots[-1]
        older = slots[:-1]
        fix = (
            "Keep 'postroom serve' or 'postroom scheduler' running; raise "
            "POSTROOM_SCHEDULER_GRACE_SECONDS to catch up runs that are later"
        )
        for index, slot in enumerate(older):
            cause = (
                "The scheduler was not running at this time. After an outage a job "
                "runs once, for its latest missed time only."
            )
            if index == 0 and count > len(slots):
                cause += (
                    f" {count - len(slots):,} earlier times since {first:%Y-%m-%d %H:%M} "
                    "UTC were missed as well and are not listed."
                )
            record_run(
                session,
                job,
                outcome=RunOutcome.MISSED,
                scheduled_for=slot,
                now=now,
                reason="missed: the scheduler was not running",
                diagnosis=_missed_diagnosis(cause, fix),
                worker=self.owner,
            )

        late = now - latest
        if late > grace:
            minutes = late.total_seconds() / 60
            record_run(
                session,
                job,
                outcome=RunOutcome.MISSED,
                scheduled_for=latest,
                now=now,
                reason=f"missed: {minutes:,.0f} minutes late, more than the grace "
                f"period of {grace.total_seconds() / 60:,.0f} minutes",
                diagnosis=_missed_diagnosis(
                    f"The run was due {minutes:,.0f} minutes before the scheduler "
                    "could start it, which is more than the grace period.",
                    fix,
                ),
                worker=self.owner,
            )
            log.warning(
                "job run missed",
                extra={"job": job.name, "scheduled_for": latest.isoformat()},
            )
            return None

        claimed = start_run(
            session,
            job,
            owner=self.owner,
            now=now,
            lease=lease,
            trigger=RunTrigger.SCHEDULE,
            scheduled_for=latest,
        )
        if claimed is None:
            record_run(
                session,
                job,
                outcome=RunOutcome.SKIPPED,
                scheduled_for=latest,
                now=now,
                reason=f"skipped: the previous run ({job.running_run_pk}) was still "
                "running; a job never runs twice at once",
                diagnosis={
                    "id": "run-overlap",
                    "step": "schedule",
                    "cause": "The previous run of this job had not finished when "
                    "this one was due.",
                    "fix": "Make the report faster, or schedule the job less often",
                    "error": None,
                },
                worker=self.owner,
            )
            log.warning(
                "job run skipped: previous run still running",
                extra={"job": job.name, "run": job.running_run_pk},
            )
        return claimed

    def _due_slots(self, job: Job, now: datetime) -> tuple[list[datetime], int]:
        """Return the last due slots (at most MAX_MISSED_RECORDED + 1) and the count."""
        assert job.next_run_at is not None
        schedule = schedule_of(job)
        slots: deque[datetime] = deque(
            [job.next_run_at], maxlen=MAX_MISSED_RECORDED + 1
        )
        count = 1
        cursor = job.next_run_at
        while True:
            if count == _MAX_SLOTS_COUNTED:
                # Years of one-minute slots: jump to the last day before now.
                cursor = max(cursor, now - timedelta(days=1))
            occurrence = schedule.next_after(cursor)
            if occurrence is None or occurrence.utc > now:
                return list(slots), count
            slots.append(occurrence.utc)
            count += 1
            cursor = occurrence.utc

    # The loop that `postroom serve` and `postroom scheduler` run.

    async def run(self, stop: asyncio.Event) -> None:
        """Schedule until ``stop`` is set; stand by while another process is active."""
        poll = self.runtime.settings.scheduler_poll_seconds
        running: set[asyncio.Task[RunResult]] = set()
        active = False
        log.info("scheduler started", extra={"scheduler": self.owner})
        try:
            while not stop.is_set():
                if not active:
                    active = await asyncio.to_thread(self.leadership.acquire)
                    if active:
                        log.info("scheduler is active", extra={"scheduler": self.owner})
                elif not await asyncio.to_thread(self.leadership.holds):
                    active = False
                    log.warning(
                        "scheduler is no longer active", extra={"scheduler": self.owner}
                    )
                    continue

                delay = poll
                if active:
                    delay = await self._round(running, poll)
                await self._wait(stop, running, delay)
        finally:
            self.cancel.set()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            await asyncio.to_thread(self.leadership.release)
            log.info("scheduler stopped", extra={"scheduler": self.owner})

    async def _round(self, running: set[asyncio.Task[RunResult]], poll: float) -> float:
        """Start the due runs there is room for; return how long to wait."""
        room = self.max_concurrent_runs - len(running)
        if room <= 0:
            return poll
        try:
            claimed = await asyncio.to_thread(self.claim_due, room)
            upcoming = await asyncio.to_thread(self.next_due)
        except Exception:
            # A database outage must not end the scheduler.
            log.exception("scheduler round failed", extra={"scheduler": self.owner})
            return poll
        for run in claimed:
            task = asyncio.create_task(asyncio.to_thread(self.runner.execute, run))
            running.add(task)
            task.add_done_callback(running.discard)
        if claimed and len(running) < self.max_concurrent_runs:
            # More may be due than there was room for a moment ago.
            return 0.0
        if upcoming is None:
            return poll
        until = (upcoming - self.clock()).total_seconds()
        # At least a short pause, so a slot another process is settling
        # does not make this loop spin.
        return min(max(until, _MIN_WAIT_SECONDS), poll)

    async def _wait(
        self, stop: asyncio.Event, running: set[asyncio.Task[RunResult]], delay: float
    ) -> None:
        if delay <= 0:
            return
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        # A finished run frees room for the next due one.
        waiters.extend(running)
        stopper = waiters[0]
        try:
            await asyncio.wait(
                waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
