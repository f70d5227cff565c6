"""`postroom job ...` and `postroom scheduler`: scheduled report jobs."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
from sqlalchemy import select

from postroom.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    errors_as_exits,
    fail,
    print_json,
    print_table,
    runtime,
)
from postroom.cli.job_options import (
    ActiveOption,
    AtOption,
    BccOption,
    BodyFileOption,
    BodyOption,
    CcOption,
    ClientOption,
    CronOption,
    DataSourceOption,
    FormatOption,
    HistoryJobOption,
    HistoryOutcomeOption,
    JsonOption,
    NameArgument,
    OnEmptyOption,
    PeriodOption,
    ProfileOption,
    QueryFileOption,
    QueryOption,
    ReportClientOption,
    ReportOption,
    RowLimitOption,
    SubjectOption,
    TimeLimitOption,
    TimeZoneOption,
    TitleOption,
    ToOption,
    job_input,
    read_file_option,
)
from postroom.cli.job_output import (
    print_job,
    print_next_runs,
    print_run,
    print_runs,
    run_text,
)
from postroom.clock import utcnow
from postroom.domain.db import transaction
from postroom.domain.scheduling import JobRun
from postroom.domain.validation import MAX_PAGE_SIZE, check_count
from postroom.reports.builtin import parse_point_in_time
from postroom.reports.sql import data_source_dialect
from postroom.schedule.cron import CronSchedule, OnceSchedule, Schedule, check_time_zone
from postroom.schedule.jobs import (
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
from postroom.schedule.scheduler import Scheduler, new_scheduler_id
from postroom.schedule.views import (
    get_run,
    job_views,
    next_runs_view,
    recent_runs,
    run_views,
)

app = typer.Typer(
    help="Scheduled jobs that run a report and email it.", no_args_is_help=True
)


@app.command("create")
def create(
    name: NameArgument,
    cron: CronOption = None,
    at: AtOption = None,
    tz: TimeZoneOption = None,
    report: ReportOption = None,
    data_source: DataSourceOption = None,
    query: QueryOption = None,
    query_file: QueryFileOption = None,
    title: TitleOption = None,
    row_limit: RowLimitOption = None,
    time_limit: TimeLimitOption = None,
    period_hours: PeriodOption = None,
    history_job: HistoryJobOption = None,
    report_client: ReportClientOption = None,
    history_outcome: HistoryOutcomeOption = None,
    fmt: FormatOption = None,
    to: ToOption = None,
    cc: CcOption = None,
    bcc: BccOption = None,
    subject: SubjectOption = None,
    body: BodyOption = None,
    body_file: BodyFileOption = None,
    profile: ProfileOption = None,
    client: ClientOption = None,
    active: ActiveOption = None,
    on_empty: OnEmptyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a job; prints it with its next five runs."""
    with runtime() as opened:
        data = job_input(
            current_report=None,
            name=name,
            cron=cron,
            at=at,
            tz=tz,
            report=report,
            report_values={
                "data_source": data_source,
                "query": query or read_file_option(query_file, "query_file"),
                "title": title,
                "row_limit": row_limit,
                "time_limit_seconds": time_limit,
                "period_hours": period_hours,
                "job": history_job,
                "client": report_client,
                "outcome": history_outcome,
            },
            fmt=fmt,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            body=body or read_file_option(body_file, "body_file"),
            profile=profile,
            client=client,
            active=active,
            on_empty=on_empty,
        )
        now = utcnow()
        with transaction(opened.sessions) as session:
            job = create_job(session, opened.settings, data, now)
            view = job_views(session, [job], now)[0]
            upcoming = next_runs_view(schedule_of(job), job.time_zone, now, 5)
    if as_json:
        print_json({**view, "next_runs": upcoming["runs"]})
        return
    print_job(view, upcoming)


@app.command("update")
def update(
    name: NameArgument,
    new_name: Annotated[
        str | None, typer.Option("--name", help="Rename the job.")
    ] = None,
    cron: CronOption = None,
    at: AtOption = None,
    tz: TimeZoneOption = None,
    report: ReportOption = None,
    data_source: DataSourceOption = None,
    query: QueryOption = None,
    query_file: QueryFileOption = None,
    title: TitleOption = None,
    row_limit: RowLimitOption = None,
    time_limit: TimeLimitOption = None,
    period_hours: PeriodOption = None,
    history_job: HistoryJobOption = None,
    report_client: ReportClientOption = None,
    history_outcome: HistoryOutcomeOption = None,
    fmt: FormatOption = None,
    to: ToOption = None,
    cc: CcOption = None,
    bcc: BccOption = None,
    subject: SubjectOption = None,
    body: BodyOption = None,
    body_file: BodyFileOption = None,
    profile: ProfileOption = None,
    client: ClientOption = None,
    active: ActiveOption = None,
    on_empty: OnEmptyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change the options given; the others stay as they are."""
    with runtime() as opened:
        now = utcnow()
        with transaction(opened.sessions) as session:
            current = get_job(session, name)
            data = job_input(
                current_report=dict(current.report),
                name=new_name,
                cron=cron,
                at=at,
                tz=tz,
                report=report,
                report_values={
                    "data_source": data_source,
                    "query": query or read_file_option(query_file, "query_file"),
                    "title": title,
                    "row_limit": row_limit,
                    "time_limit_seconds": time_limit,
                    "period_hours": period_hours,
                    "job": history_job,
                    "client": report_client,
                    "outcome": history_outcome,
                },
                fmt=fmt,
                to=to,
                cc=cc,
                bcc=bcc,
                subject=subject,
                body=body or read_file_option(body_file, "body_file"),
                profile=profile,
                client=client,
                active=active,
                on_empty=on_empty,
            )
            job = update_job(session, opened.settings, name, data, now)
            view = job_views(session, [job], now)[0]
            upcoming = next_runs_view(schedule_of(job), job.time_zone, now, 5)
    if as_json:
        print_json({**view, "next_runs": upcoming["runs"]})
        return
    print_job(view, upcoming)


@app.command("list")
def list_(
    client: Annotated[
        str | None, typer.Option("--client", help="Only this client's jobs.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List every job with its next run and its last outcome."""
    with runtime() as opened, transaction(opened.sessions) as session:
        views = job_views(session, list_jobs(session, client), utcnow())
    if as_json:
        print_json(views)
        return
    rows = [
        {
            "name": view["name"],
            "client": view["client"],
            "schedule": view["schedule"],
            "time_zone": view["time_zone"],
            "next_run": view["next_run_local"],
            "last_outcome": run_text(view["last_run"]) if view["last_run"] else None,
            "active": view["is_active"],
        }
        for view in views
    ]
    print_table(
        rows,
        [
            "name",
            "client",
            "schedule",
            "time_zone",
            "next_run",
            "last_outcome",
            "active",
        ],
    )


@app.command("show")
def show(name: NameArgument, as_json: JsonOption = False) -> None:
    """Show a job, its next five runs and its latest runs."""
    now = utcnow()
    with runtime() as opened, transaction(opened.sessions) as session:
        job = get_job(session, name)
        view = job_views(session, [job], now)[0]
        upcoming = next_runs_view(schedule_of(job), job.time_zone, now, 5)
        runs = run_views(session, recent_runs(session, job))
    if as_json:
        print_json({**view, "next_runs": upcoming["runs"], "recent_runs": runs})
        return
    print_job(view, upcoming)
    if runs:
        typer.echo("\nlatest runs:")
        print_runs(runs)


@app.command("runs")
def runs_(
    name: NameArgument,
    limit: Annotated[
        int,
        typer.Option("--limit", help=f"How many, newest first (1-{MAX_PAGE_SIZE})."),
    ] = 20,
    as_json: JsonOption = False,
) -> None:
    """List a job's runs with their outcome and delivery result."""
    with runtime() as opened, transaction(opened.sessions) as session:
        job = get_job(session, name)
        query = (
            select(JobRun)
            .where(JobRun.job_pk == job.id)
            .order_by(JobRun.id.desc())
            .limit(check_count(limit, "limit", MAX_PAGE_SIZE))
        )
        views = run_views(session, list(session.scalars(query)))
    if as_json:
        print_json(views)
        return
    print_runs(views)


@app.command("delete")
def delete(
    name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm the deletion.")] = False,
) -> None:
    """Delete a job; its run history stays."""
    if not yes:
        fail(f"deleting job {name!r} needs --yes", EXIT_INVALID)
    with runtime() as opened, transaction(opened.sessions) as session:
        delete_job(session, name, utcnow())
    typer.echo(f"deleted job {name!r}", err=True)


@app.command("run")
def run(name: NameArgument, as_json: JsonOption = False) -> None:
    """Run a job now, in this process, and print the run.

    The email is queued; the delivery worker of `postroom serve` (or
    `postroom worker --drain`) sends it. Exits 1 when the run failed.
    """
    # The run itself is printed; its log lines would only repeat it.
    with runtime(log_level="CRITICAL") as opened:
        claimed = start_manual_run(
            opened.sessions,
            name,
            owner=new_scheduler_id(),
            now=utcnow(),
            lease=lease_seconds(opened.settings),
        )
        Runner(opened).execute(claimed)
        with transaction(opened.sessions) as session:
            view = run_views(session, [get_run(session, claimed.run_pk)])[0]
    if as_json:
        print_json(view)
    else:
        print_run(view)
    if view["outcome"] == "failed":
        raise typer.Exit(EXIT_FAILED)


@app.command("next")
def next_(
    name: Annotated[
        str | None,
        typer.Argument(metavar="[NAME]", help="A saved job; or give --cron/--at."),
    ] = None,
    count: Annotated[int, typer.Option("--count", help="How many runs (1-100).")] = 5,
    cron: CronOption = None,
    at: AtOption = None,
    tz: TimeZoneOption = None,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            help="Runs after this time (default now; UTC unless an offset is given).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the next runs of a job, or of a schedule before saving it, in the
    job's time zone and in UTC, with a note where a daylight-saving change moves one."""
    now = utcnow()
    with errors_as_exits():
        start = parse_point_in_time(after, now, "after") if after else now
    if name is None:
        if not cron and not at:
            fail("give a job NAME, or a schedule with --cron or --at", EXIT_INVALID)
        with runtime() as _opened:
            zone = check_time_zone(tz or "UTC", "tz")
            schedule: Schedule = (
                CronSchedule(cron, zone)
                if cron
                else OnceSchedule(parse_run_at(at or "", "at"), zone)
            )
            view = {"job": None, **next_runs_view(schedule, zone.key, start, count)}
    else:
        if cron or at or tz:
            fail("give either a job NAME or --cron/--at/--tz, not both", EXIT_INVALID)
        with runtime() as opened, transaction(opened.sessions) as session:
            job = get_job(session, name)
            view = {
                "job": job.name,
                **next_runs_view(schedule_of(job), job.time_zone, start, count),
            }
    if as_json:
        print_json(view)
        return
    what = f"{view['job']}: " if view["job"] else ""
    typer.echo(f"{what}{view['schedule']} ({view['time_zone']})")
    print_next_runs(view)


@app.command("data-sources")
def data_sources(as_json: JsonOption = False) -> None:
    """List the data sources SQL reports can read, by name."""
    with runtime() as opened:
        sources = [
            {"name": name, "dialect": data_source_dialect(url)}
            for name, url in sorted(opened.settings.data_sources.items())
        ]
    if as_json:
        print_json(sources)
        return
    print_table(sources, ["name", "dialect"])


def scheduler() -> None:
    """Run the scheduler without the HTTP API or the delivery worker.

    With PostgreSQL, run one in several processes: one is active, the others
    stand by and take over within seconds when it stops.
    """
    with runtime(log_level=None) as opened:
        service = Scheduler(opened)

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            await service.run(stop)

        asyncio.run(main())
