"""Execute one run: produce the report, build the email, queue it, record it.

The report is written to a temporary file as its rows arrive, so memory
does not grow with the row count; the finished file, bounded by the size
limit, is what goes into the message. Queueing the message, linking it to
the run and recording the outcome happen in one transaction: a run never
shows as succeeded without its message in the outbox. Delivery happens
later, in the worker.
"""

from __future__ import annotations

import contextlib
import html
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from postroom.clock import utcnow
from postroom.domain.db import transaction
from postroom.domain.profiles import find_profile, hold_reason
from postroom.domain.scheduling import OnEmpty, ReportFormat, RunOutcome
from postroom.errors import InvalidInputError
from postroom.mime.build import Attachment, MessageDraft, build_message
from postroom.outbox.queue import store_message
from postroom.reports.builtin import schedule_history_table, schedule_list_table
from postroom.reports.errors import ReportError
from postroom.reports.sql import query_table
from postroom.reports.table import Table, limit_time
from postroom.reports.writers import ReportFile, attachment_filename, write_report
from postroom.runtime import Runtime
from postroom.schedule.runs import ClaimedRun, JobSnapshot, finish_run
from postroom.schedule.templates import render
from postroom.templates.render import RenderLimits, TemplateRenderError

log = logging.getLogger("postroom.scheduler")

# Room kept for headers and the text body when sizing the attachment.
_MESSAGE_OVERHEAD = 64 * 1024
# Base64 turns 57 bytes into a 76-character line plus CRLF (RFC 2045, 6.8).
_BASE64_RATIO = 57 / 78


@dataclass
class RunResult:
    run_pk: int
    outcome: RunOutcome
    rows: int | None = None
    message_pks: list[int] = field(default_factory=list)
    error: str | None = None
    diagnosis: dict[str, Any] | None = None


def _template_error(field_name: str, exc: TemplateRenderError) -> ReportError:
    message = exc.reason
    if exc.line is not None:
        message = f"line {exc.line}: {message}"
    return ReportError(
        "template-error",
        f"the {field_name} template failed: {message}",
        f"Correct the job's {field_name} template; the variables are job, client, "
        "rows, run_date, run_time, run_at, time_zone, report and format",
        error=message,
        step="template",
    )


class Runner:
    """Executes claimed runs for one runtime."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Callable[[], datetime] = utcnow,
        cancel: threading.Event | None = None,
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self.cancel = cancel

    def execute(self, claimed: ClaimedRun) -> RunResult:
        """Run the report and queue its email; record the outcome in every case."""
        started = time.monotonic()
        job = claimed.job
        try:
            result = self._execute(claimed)
        except ReportError as exc:
            result = RunResult(
                claimed.run_pk,
                RunOutcome.FAILED,
                error=exc.cause,
                diagnosis=exc.as_diagnosis(),
            )
            self._finish(claimed, result)
        except Exception as exc:
            # A bug or an outage of Postroom's own database: record what is
            # known so the run does not stay "running" until its lease expires.
            log.exception(
                "job run failed unexpectedly",
                extra={"job": job.name, "run": claimed.run_pk},
            )
            result = RunResult(
                claimed.run_pk,
                RunOutcome.FAILED,
                error=f"internal error: {type(exc).__name__}: {exc}",
                diagnosis={
                    "id": "internal-error",
                    "step": "run",
                    "cause": f"Postroom failed while running the job: {exc}",
                    "fix": "Check the service's log for the traceback; report it "
                    "if it persists",
                    "error": str(exc),
                },
            )
            with contextlib.suppress(Exception):
                self._finish(claimed, result)

        level = logging.INFO if result.outcome != RunOutcome.FAILED else logging.ERROR
        # The email is only queued here; the worker records what the
        # provider answers, and the run's view combines both.
        queued = " (email queued for delivery)" if result.message_pks else ""
        log.log(
            level,
            "job run %s%s",
            result.outcome.value,
            queued,
            extra={
                "job": job.name,
                "run": claimed.run_pk,
                "outcome": result.outcome.value,
                "rows": result.rows,
                "messages": result.message_pks,
                "diagnosis": (result.diagnosis or {}).get("id"),
                "duration_ms": int((time.monotonic() - started) * 1000),
            },
        )
        return result

    def _finish(self, claimed: ClaimedRun, result: RunResult) -> None:
        with transaction(self.runtime.sessions) as session:
            finish_run(
                session,
                claimed,
                result.outcome,
                now=self.clock(),
                rows=result.rows,
                error=result.error,
                diagnosis=result.diagnosis,
            )

    def _execute(self, claimed: ClaimedRun) -> RunResult:
        job = claimed.job
        settings = self.runtime.settings
        zone = ZoneInfo(job.time_zone)
        when = (claimed.scheduled_for or claimed.started_at).astimezone(zone)
        budget = int(
            (settings.report_max_message_bytes - _MESSAGE_OVERHEAD) * _BASE64_RATIO
        )

        with tempfile.TemporaryDirectory(prefix="postroom-report-") as folder:
            path = Path(folder) / attachment_filename(job.name, when.date(), job.format)
            with self._table(job, claimed, budget) as table:
                report = write_report(table, job.format, path, max_bytes=budget)

            if report.rows == 0 and job.on_empty == OnEmpty.SKIP:
                result = RunResult(
                    claimed.run_pk,
                    RunOutcome.SKIPPED,
                    rows=0,
                    error="the report returned no rows, and the job skips empty "
                    "results",
                    diagnosis={
                        "id": "empty-result",
                        "step": "report",
                        "cause": "The report returned no rows.",
                        "fix": "Nothing to do; set on_empty to 'send' to email "
                        "empty reports too",
                        "error": None,
                    },
                )
                self._finish(claimed, result)
                return result

            context = {
                "job": job.name,
                "client": job.client or "",
                "rows": report.rows,
                "run_date": when.date().isoformat(),
                "run_time": when.strftime("%Y-%m-%d %H:%M %Z"),
                "run_at": when,
                "time_zone": job.time_zone,
                "report": _report_title(job),
                "format": job.format.value,
            }
            draft = self._draft(job, claimed, report, context)
            return self._queue(claimed, draft, report)

    @contextlib.contextmanager
    def _table(
        self, job: JobSnapshot, claimed: ClaimedRun, max_value_bytes: int
    ) -> Iterator[Table]:
        settings = self.runtime.settings
        spec = job.report
        kind = spec.get("kind")
        if kind == "sql":
            name = spec["data_source"]
            url = settings.data_sources.get(name)
            if url is None:
                raise ReportError(
                    "report-data-source-unknown",
                    f"the data source {name!r} is not configured",
                    "Configure it (POSTROOM_DATA_SOURCE_<NAME>=<url> or the "
                    "[data_sources] table of the config file), or change the job's "
                    "report.data_source",
                )
            with query_table(
                url,
                spec["query"],
                title=spec.get("title") or job.name,
                max_rows=spec.get("row_limit") or settings.report_max_rows,
                max_seconds=spec.get("time_limit_seconds")
                or settings.report_max_seconds,
                cancel=self.cancel,
                # One value larger than the whole attachment may be can never
                # be sent, so it stops the run before it is written.
                max_value_bytes=max_value_bytes,
            ) as table:
                yield table
            return

        now = self.clock()
        deadline = time.monotonic() + settings.report_max_seconds
        with self.runtime.sessions() as session:
            if kind == "schedule-list":
                table = schedule_list_table(session, now, spec.get("client"))
            else:
                since = now - timedelta(hours=int(spec.get("period_hours", 24)))
                table = schedule_history_table(
                    session,
                    since,
                    now,
                    job=spec.get("job"),
                    client=spec.get("client"),
                    outcome=spec.get("outcome"),
                )
            table.rows = limit_time(table.rows, deadline, settings.report_max_seconds)
            yield table

    def _draft(
        self,
        job: JobSnapshot,
        claimed: ClaimedRun,
        report: ReportFile,
        context: dict[str, Any],
    ) -> MessageDraft:
        limits = RenderLimits.from_settings(self.runtime.settings)
        try:
            subject = render(job.subject_template, context, "subject", limits)
        except TemplateRenderError as exc:
            raise _template_error("subject", exc) from exc
        subject = " ".join(subject.split())
        try:
            body = render(job.body_template, context, "body", limits)
        except TemplateRenderError as exc:
            raise _template_error("body", exc) from exc

        with self.runtime.sessions() as session:
            profile = find_profile(session, job.profile_name)
            sender = profile.from_address if profile is not None else None
        if profile is None:
            raise ReportError(
                "profile-missing",
                f"the email profile {job.profile_name!r} does not exist",
                "Create the profile, or change the job's profile",
                step="email",
            )
        if not sender:
            raise ReportError(
                "profile-no-from",
                f"the email profile {job.profile_name!r} has no From address, so "
                "the report cannot be emailed",
                f"Set the From address (and the outbound server) of "
                f"{job.profile_name!r}, or choose another profile for the job",
                step="email",
            )

        headers = {"X-Postroom-Job": job.name, "X-Postroom-Run": str(claimed.run_pk)}
        if job.format == ReportFormat.HTML:
            table_html = report.path.read_text(encoding="utf-8")
            paragraphs = "".join(
                f"<p>{html.escape(paragraph).replace(chr(10), '<br>')}</p>"
                for paragraph in body.split("\n\n")
                if paragraph.strip()
            )
            return MessageDraft(
                sender=sender,
                to=job.to,
                cc=job.cc,
                bcc=job.bcc,
                subject=subject,
                text=body,
                html=f"<html><body>{paragraphs}{table_html}</body></html>",
                headers=headers,
            )
        return MessageDraft(
            sender=sender,
            to=job.to,
            cc=job.cc,
            bcc=job.bcc,
            subject=subject,
            text=body,
            headers=headers,
            attachments=[
                Attachment(
                    filename=report.path.name,
                    content=report.path.read_bytes(),
                    content_type=report.content_type,
                )
            ],
        )

    def _queue(
        self, claimed: ClaimedRun, draft: MessageDraft, report: ReportFile
    ) -> RunResult:
        limit = self.runtime.settings.report_max_message_bytes
        try:
            built = build_message(draft)
        except InvalidInputError as exc:
            raise ReportError(
                "email-invalid",
                f"the email cannot be built: {exc}",
                "Correct the job's recipients, subject or body",
                error=str(exc),
                step="email",
            ) from exc
        if len(built.raw) > limit:
            raise ReportError(
                "report-size-limit",
                f"the email with its {report.format.value.upper()} report is "
                f"{len(built.raw):,} bytes, over the limit of {limit:,} bytes, so it "
                "was not queued",
                "Narrow the query or shorten the period, choose a more compact format "
                "(XLSX is compressed), or raise POSTROOM_REPORT_MAX_MESSAGE_BYTES if "
                "your provider accepts larger messages",
                step="email",
            )

        with transaction(self.runtime.sessions) as session:
            profile = find_profile(session, claimed.job.profile_name)
            message = store_message(
                session,
                built,
                claimed.job.profile_name,
                source="schedule",
                held_reason=hold_reason(profile, claimed.job.profile_name),
            )
            finish_run(
                session,
                claimed,
                RunOutcome.SUCCEEDED,
                now=self.clock(),
                rows=report.rows,
                message_pks=[message.id],
            )
            message_pk = message.id
        return RunResult(
            claimed.run_pk,
            RunOutcome.SUCCEEDED,
            rows=report.rows,
            message_pks=[message_pk],
        )


def _report_title(job: JobSnapshot) -> str:
    spec = job.report
    if spec.get("kind") == "sql":
        return str(spec.get("title") or job.name)
    return (
        "Schedule List" if spec.get("kind") == "schedule-list" else "Schedule History"
    )
