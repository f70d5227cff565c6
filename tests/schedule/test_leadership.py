"""One active scheduler among several processes: two real `postroom scheduler`
processes on PostgreSQL, one killed with SIGKILL, the other taking over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from postroom.clock import utcnow
from postroom.devserver.sink import SinkServer
from postroom.domain.scheduling import JobRun
from postroom.runtime import Runtime
from postroom.schedule.leadership import SCHEDULER_LOCK_ID, FileLeadership
from tests.schedule.helpers import add_job, job_runtime, point_profile

POSTROOM = str(Path(sys.executable).parent / "postroom")
# Waits are bounds on how long to look, not speed assertions.
WAIT_SECONDS = 30.0

HOLDER_QUERY = text(
    """
    SELECT a.application_name FROM pg_locks l
    JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted
      AND l.classid = :high AND l.objid = :low AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    """
)


def wait_for(condition: Callable[[], object], what: str) -> object:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}", pytrace=False)


@pytest.fixture
def pg_runtime(
    tmp_path: Path, sales_db: Path, pg_database_url: str
) -> Iterator[Runtime]:
    opened = job_runtime(tmp_path, pg_database_url, sales_db)
    yield opened
    opened.close()


def start_scheduler(
    runtime: Runtime, tmp_path: Path, name: str
) -> subprocess.Popen[bytes]:
    settings = runtime.settings
    assert settings.database_url is not None
    assert settings.secret_key is not None
    env = {
        **os.environ,
        "POSTROOM_DATA_DIR": str(tmp_path / f"data-{name}"),
        "POSTROOM_DATABASE_URL": settings.database_url,
        "POSTROOM_SECRET_KEY": settings.secret_key,
        "POSTROOM_DATA_SOURCE_SALES": settings.data_sources["sales"],
        "POSTROOM_SCHEDULER_POLL_SECONDS": "0.2",
        "POSTROOM_LOG_FORMAT": "json",
    }
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen(
        [POSTROOM, "scheduler"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def lock_holders(runtime: Runtime) -> list[int]:
    """Return the PIDs of the processes holding the scheduler lock."""
    with runtime.engine.connect() as connection:
        names = connection.execute(
            HOLDER_QUERY,
            {"high": SCHEDULER_LOCK_ID >> 32, "low": SCHEDULER_LOCK_ID & 0xFFFFFFFF},
        ).scalars()
        return [int(name.rsplit(":", 1)[1]) for name in names]


def run_once_soon(runtime: Runtime, name: str) -> int:
    """Add a one-off job due in a second; return the pid of the process that ran it."""
    now = utcnow()
    due = (now + timedelta(seconds=1)).replace(tzinfo=None, microsecond=0)
    add_job(runtime, now, name=name, run_at=due.isoformat(), time_zone="UTC")

    def finished() -> str | None:
        with runtime.sessions() as session:
            run = session.scalars(select(JobRun).where(JobRun.job_name == name)).first()
            if run is None or run.outcome == "running":
                return None
            assert run.outcome == "succeeded", run.error
            return run.worker

    worker = wait_for(finished, f"a run of {name}")
    assert isinstance(worker, str)
    return int(worker.split(":")[1])


@pytest.mark.postgres
@pytest.mark.slow
def test_killed_scheduler_is_replaced(
    pg_runtime: Runtime, tmp_path: Path, start_sink: Callable[..., SinkServer]
) -> None:
    point_profile(pg_runtime, start_sink().port)
    first = start_scheduler(pg_runtime, tmp_path, "first")
    second = start_scheduler(pg_runtime, tmp_path, "second")
    processes = {first.pid: first, second.pid: second}
    try:
        holders = wait_for(lambda: lock_holders(pg_runtime), "a scheduler to be active")
        assert isinstance(holders, list)
        assert len(holders) == 1
        (active,) = holders
        assert active in processes
        (standby,) = set(processes) - {active}

        # Both are up; only the active one runs jobs.
        assert run_once_soon(pg_runtime, "Before the kill") == active
        assert lock_holders(pg_runtime) == [active]
        assert processes[standby].poll() is None

        processes[active].send_signal(signal.SIGKILL)
        processes[active].wait(10)

        wait_for(
            lambda: lock_holders(pg_runtime) == [standby], "the standby to take over"
        )
        assert run_once_soon(pg_runtime, "After the kill") == standby
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            process.wait(30)

    assert processes[standby].returncode == 0
    log = (
        tmp_path / ("first.log" if standby == first.pid else "second.log")
    ).read_text()
    assert "scheduler is active" in log
    assert "scheduler stopped" in log


def test_file_lock_admits_one(tmp_path: Path) -> None:
    first = FileLeadership(tmp_path / "postroom.db.scheduler.lock")
    second = FileLeadership(tmp_path / "postroom.db.scheduler.lock")

    assert first.acquire()
    assert not second.acquire()

    first.release()
    assert second.acquire()
    second.release()


@pytest.mark.postgres
def test_pg_lock_admits_one(pg_runtime: Runtime) -> None:
    from postroom.schedule.leadership import PostgresLeadership

    first = PostgresLeadership(pg_runtime.engine)
    second = PostgresLeadership(pg_runtime.engine)
    try:
        assert first.acquire()
        assert not second.acquire()
        assert first.holds()

        first.release()
        assert second.acquire()
    finally:
        first.release()
        second.release()
