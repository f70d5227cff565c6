"""Scheduled jobs: CRUD, run now, next runs and run history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from postroom.api.deps import RuntimeDep, TokenDep
from postroom.api.params import BeforeIdQuery, IdPath, LimitQuery
from postroom.clock import utcnow
from postroom.domain.db import transaction
from postroom.domain.scheduling import JobRun
from postroom.errors import InvalidInputError
from postroom.reports.sql import data_source_dialect
from postroom.schedule.cron import CronSchedule, OnceSchedule, Schedule, check_time_zone
from postroom.schedule.jobs import (
    JobInput,
    create_job,
    delete_job,
    get_job,
    list_jobs,
    parse_run_at,
    schedule_of,
    update_job,
)
from postroom.schedule.runner import Runner
from postroom.schedule.runs import lease_seconds, start_manual_run
from postroom.schedule.scheduler import new_scheduler_id
from postroom.schedule.views import (
    get_run,
    job_views,
    next_runs_view,
    recent_runs,
    run_views,
)

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
schedules_router = APIRouter(prefix="/api/schedules", tags=["jobs"])
data_sources_router = APIRouter(prefix="/api/data-sources", tags=["jobs"])

CountQuery = Annotated[int, Query(ge=1, le=100, description="How many runs")]
AfterQuery = Annotated[
    datetime | None,
    Query(description="Runs after this instant (ISO 8601 with offset); default now"),
]


class SchedulePreview(BaseModel):
    """A schedule to preview before saving a job."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = None
    run_at: str | None = None
    time_zone: str = "UTC"
    count: int = Field(default=5, ge=1, le=100)
    after: datetime | None = None


def _after(value: datetime | None, field: str = "after") -> datetime:
    if value is None:
        return utcnow()
    if value.tzinfo is None:
        raise InvalidInputError(
            "must include an offset, for example 2026-03-07T12:00:00Z", field=field
        )
    return value


@router.get("")
def list_all(
    runtime: RuntimeDep, _token: TokenDep, client: str | None = None
) -> list[dict[str, Any]]:
    """List every job with its next run and its last run's outcome."""
    with transaction(runtime.sessions) as session:
        return job_views(session, list_jobs(session, client), utcnow())


@router.post("", status_code=status.HTTP_201_CREATED)
def create(
    data: JobInput, runtime: RuntimeDep, _token: TokenDep, response: Response
) -> dict[str, Any]:
    now = utcnow()
    with transaction(runtime.sessions) as session:
        job = create_job(session, runtime.settings, data, now)
        view = job_views(session, [job], now)[0]
    response.headers["Location"] = f"/api/jobs/{quote(view['name'], safe='')}"
    return view


@router.get("/{name}")
def show(name: str, runtime: RuntimeDep, _token: TokenDep) -> dict[str, Any]:
    """Show one job with its next five runs and its ten latest runs."""
    now = utcnow()
    with transaction(runtime.sessions) as session:
        job = get_job(session, name)
        view = job_views(session, [job], now)[0]
        view["next_runs"] = next_runs_view(schedule_of(job), job.time_zone, now, 5)[
            "runs"
        ]
        view["recent_runs"] = run_views(session, recent_runs(session, job))
        return view


@router.patch("/{name}")
def update(
    name: str, data: JobInput, runtime: RuntimeDep, _token: TokenDep
) -> dict[str, Any]:
    now = utcnow()
    with transaction(runtime.sessions) as session:
        job = update_job(session, runtime.settings, name, data, now)
        return job_views(session, [job], now)[0]


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete(name: str, runtime: RuntimeDep, _token: TokenDep) -> None:
    with transaction(runtime.sessions) as session:
        delete_job(session, name, utcnow())


@router.post("/{name}/run", status_code=status.HTTP_202_ACCEPTED)
def run_now(
    name: str,
    runtime: RuntimeDep,
    _token: TokenDep,
    background: BackgroundTasks,
    response: Response,
) -> dict[str, Any]:
    """Start a run now; 409 while the job is running. The run continues after
    the response: poll the Location for its outcome."""
    claimed = start_manual_run(
        runtime.sessions,
        name,
        owner=new_scheduler_id(),
        now=utcnow(),
        lease=lease_seconds(runtime.settings),
    )
    background.add_task(Runner(runtime).execute, claimed)
    response.headers["Location"] = (
        f"/api/jobs/{quote(name, safe='')}/runs/{claimed.run_pk}"
    )
    with transaction(runtime.sessions) as session:
        return run_views(session, [get_run(session, claimed.run_pk)])[0]


@router.get("/{name}/next")
def next_runs(
    name: str,
    runtime: RuntimeDep,
    _token: TokenDep,
    count: CountQuery = 5,
    after: AfterQuery = None,
) -> dict[str, Any]:
    """List the next runs, each in the job's time zone and in UTC."""
    with transaction(runtime.sessions) as session:
        job = get_job(session, name)
        view = next_runs_view(schedule_of(job), job.time_zone, _after(after), count)
        return {"job": job.name, **view}


@router.get("/{name}/runs")
def runs(
    name: str,
    runtime: RuntimeDep,
    _token: TokenDep,
    limit: LimitQuery = 20,
    before_id: BeforeIdQuery = None,
) -> list[dict[str, Any]]:
    """List the job's runs, newest first, with each email's delivery result."""
    with transaction(runtime.sessions) as session:
        job = get_job(session, name)
        query = (
            select(JobRun)
            .where(JobRun.job_pk == job.id)
            .order_by(JobRun.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            query = query.where(JobRun.id < before_id)
        return run_views(session, list(session.scalars(query)))


@router.get("/{name}/runs/{id}")
def run(
    name: str, run_pk: IdPath, runtime: RuntimeDep, _token: TokenDep
) -> dict[str, Any]:
    with transaction(runtime.sessions) as session:
        return run_views(session, [get_run(session, run_pk, job_name=name)])[0]


@schedules_router.post("/next")
def preview(request: SchedulePreview, _token: TokenDep) -> dict[str, Any]:
    """Show the next runs of a schedule before saving a job with it."""
    zone = check_time_zone(request.time_zone)
    schedule: Schedule
    if request.cron and request.run_at:
        raise InvalidInputError("give either cron or run_at, not both", field="run_at")
    if request.cron:
        schedule = CronSchedule(request.cron, zone)
    elif request.run_at:
        schedule = OnceSchedule(parse_run_at(request.run_at), zone)
    else:
        raise InvalidInputError("a cron expression or run_at is required", field="cron")
    return next_runs_view(schedule, zone.key, _after(request.after), request.count)


@data_sources_router.get("")
def data_sources(runtime: RuntimeDep, _token: TokenDep) -> list[dict[str, str]]:
    """List the configured data sources by name and kind, without their URLs."""
    return [
        {"name": name, "dialect": data_source_dialect(url)}
        for name, url in sorted(runtime.settings.data_sources.items())
    ]
