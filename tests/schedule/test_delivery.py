"""A scheduled job end to end: it runs on its minute (injected clock), the
worker delivers its CSV, XLSX and PDF to a real SMTP server, and the two
built-in reports show each run with the recipient's recorded reply. A job
whose server refuses the email shows as failed in the history."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import openpyxl
import pypdf

from postroom.devserver.sink import SinkServer
from postroom.outbox.worker import Worker
from postroom.reports.builtin import (
    schedule_history,
    schedule_history_table,
    schedule_list,
)
from postroom.runtime import Runtime
from postroom.schedule.scheduler import Scheduler
from tests.peers.scripted import ScriptedServer
from tests.schedule.helpers import FakeClock, add_job, point_profile, utc


def attachment_of(raw: bytes) -> tuple[str, str, bytes]:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    parts = list(parsed.iter_attachments())
    assert len(parts) == 1
    part = parts[0]
    content = part.get_payload(decode=True)
    assert isinstance(content, bytes)
    return part.get_filename() or "", part.get_content_type(), content


def history(runtime: Runtime, clock: FakeClock, **filters: str) -> list[dict[str, Any]]:
    with runtime.sessions() as session:
        return list(
            schedule_history(
                session,
                clock.now - timedelta(hours=1),
                clock.now + timedelta(hours=1),
                **filters,
            )
        )


def test_job_a_minute_ahead_delivers_attachments(
    any_jobs_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    runtime = any_jobs_runtime
    sink = start_sink()
    point_profile(runtime, sink.port)
    # 07:00 CDT is 12:00 UTC; the jobs are created a minute before.
    clock = FakeClock(utc(2026, 5, 4, 11, 59))
    for fmt in ("csv", "xlsx", "pdf"):
        add_job(
            runtime,
            clock.now,
            name=f"Open orders {fmt}",
            cron="0 7 * * *",
            format=fmt,
            to=["ops@example.com"],
            subject="{{ job }}: {{ rows }} open orders on {{ run_date }}",
        )
    scheduler = Scheduler(runtime, clock=clock)

    clock.now = utc(2026, 5, 4, 11, 59, 59)
    assert scheduler.run_due() == []
    clock.now = utc(2026, 5, 4, 12, 0)
    results = scheduler.run_due()
    assert sorted(result.outcome for result in results) == ["succeeded"] * 3

    # Queued, not yet delivered: the history shows "sending", not "succeeded".
    assert {run["outcome"] for run in history(runtime, clock)} == {"sending"}

    assert asyncio.run(Worker(runtime).drain()) == 3

    received = {
        message.headers["Subject"]: message for message in sink.handler.messages
    }
    assert set(received) == {
        f"Open orders {fmt}: 25 open orders on 2026-05-04"
        for fmt in ("csv", "xlsx", "pdf")
    }

    name, content_type, content = attachment_of(
        received["Open orders csv: 25 open orders on 2026-05-04"].content
    )
    assert (name, content_type) == ("Open-orders-csv-2026-05-04.csv", "text/csv")
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    assert rows[0] == ["id", "customer", "city", "total", "status"]
    assert rows[25] == ["25", "Customer 25", "Chicago", "37.5", "open"]
    assert len(rows) == 26

    name, content_type, content = attachment_of(
        received["Open orders xlsx: 25 open orders on 2026-05-04"].content
    )
    assert name == "Open-orders-xlsx-2026-05-04.xlsx"
    assert content_type == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    assert sheet is not None
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0] == ["id", "customer", "city", "total", "status"]
    assert values[25] == [25, "Customer 25", "Chicago", 37.5, "open"]

    name, content_type, content = attachment_of(
        received["Open orders pdf: 25 open orders on 2026-05-04"].content
    )
    assert (name, content_type) == ("Open-orders-pdf-2026-05-04.pdf", "application/pdf")
    text = pypdf.PdfReader(io.BytesIO(content)).pages[0].extract_text()
    assert "Customer 1 " in text
    assert "Customer 25" in text

    queue_ids = {
        message.headers["Subject"].split(":")[0]: message.id
        for message in sink.handler.messages
    }
    with runtime.sessions() as session:
        listed = {item["job"]: item for item in schedule_list(session, clock.now)}
    for job, queue_id in queue_ids.items():
        item = listed[job]
        assert item["last_outcome"] == "succeeded"
        assert item["next_run_utc"] == "2026-05-05T12:00:00+00:00"
        assert item["next_run_local"] == "2026-05-05T07:00:00-05:00"
        recipient = item["last_run"]["messages"][0]["recipients"][0]
        assert recipient["address"] == "ops@example.com"
        assert recipient["reply_code"] == 250
        assert recipient["reply_text"] == f"2.0.0 OK queued as {queue_id}"

    runs = {run["job"]: run for run in history(runtime, clock)}
    assert set(runs) == set(queue_ids)
    for job, queue_id in queue_ids.items():
        run = runs[job]
        assert run["outcome"] == "succeeded"
        assert run["delivery"] == "delivered"
        assert run["rows"] == 25
        assert run["scheduled_for"] == utc(2026, 5, 4, 12, 0)
        recipient = run["messages"][0]["recipients"][0]
        assert recipient["status"] == "accepted"
        assert recipient["reply_text"] == f"2.0.0 OK queued as {queue_id}"

    with runtime.sessions() as session:
        table = schedule_history_table(
            session, clock.now - timedelta(hours=1), clock.now + timedelta(hours=1)
        )
        flat = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
    assert {row["reply_text"] for row in flat} == {
        f"2.0.0 OK queued as {queue_id}" for queue_id in queue_ids.values()
    }


def test_refused_email_fails_in_history(
    any_jobs_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    runtime = any_jobs_runtime
    server = start_scripted(
        replies={"DATA": "554 5.7.1 Message rejected: attachments not allowed"}
    )
    point_profile(runtime, server.port)
    clock = FakeClock(utc(2026, 5, 4, 11, 59))
    add_job(runtime, clock.now, cron="0 7 * * *", format="xlsx")
    scheduler = Scheduler(runtime, clock=clock)

    clock.now = utc(2026, 5, 4, 12, 0)
    assert [result.outcome for result in scheduler.run_due()] == ["succeeded"]
    asyncio.run(Worker(runtime).drain())

    (run,) = history(runtime, clock)
    assert run["outcome"] == "failed"
    assert run["failed_in"] == "delivery"
    assert run["report_outcome"] == "succeeded"
    assert run["delivery"] == "failed"
    assert run["error"] == (
        "the provider refused the email for ops@example.com: 554 5.7.1 Message "
        "rejected: attachments not allowed"
    )
    assert run["diagnosis"]["id"] == "permanent-reply"
    assert "5.7.1 Message rejected" in run["diagnosis"]["cause"]
    assert run["diagnosis"]["fix"]
    recipient = run["messages"][0]["recipients"][0]
    assert recipient["status"] == "failed"
    assert recipient["reply_code"] == 554

    with runtime.sessions() as session:
        failed = list(
            schedule_history(
                session,
                clock.now - timedelta(hours=1),
                clock.now + timedelta(hours=1),
                outcome="failed",
            )
        )
        succeeded = list(
            schedule_history(
                session,
                clock.now - timedelta(hours=1),
                clock.now + timedelta(hours=1),
                outcome="succeeded",
            )
        )
        (listed,) = schedule_list(session, clock.now)
        table = schedule_history_table(
            session, clock.now - timedelta(hours=1), clock.now + timedelta(hours=1)
        )
        (row,) = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
    assert [item["id"] for item in failed] == [run["id"]]
    assert succeeded == []
    assert listed["last_outcome"] == "failed"
    assert listed["last_failed_in"] == "delivery"
    assert row["outcome"] == "failed"
    assert row["failed_in"] == "delivery"
    assert row["reply_code"] == 554
    assert row["cause"] == run["diagnosis"]["cause"]


def test_builtin_reports_as_job_reports(
    jobs_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    runtime = jobs_runtime
    sink = start_sink()
    point_profile(runtime, sink.port)
    clock = FakeClock(utc(2026, 5, 4, 11, 0))
    add_job(runtime, clock.now, name="Open orders", cron="0 7 * * *")
    add_job(
        runtime,
        clock.now,
        name="Daily history",
        cron="0 8 * * *",
        client="Ops",
        report={"kind": "schedule-history", "period_hours": 24},
        format="csv",
    )
    add_job(
        runtime,
        clock.now,
        name="Schedule overview",
        cron="0 9 * * *",
        report={"kind": "schedule-list"},
        format="pdf",
    )
    scheduler = Scheduler(runtime, clock=clock)

    for hour in (12, 13, 14):
        clock.now = utc(2026, 5, 4, hour, 0)
        assert [result.outcome for result in scheduler.run_due()] == ["succeeded"]
        asyncio.run(Worker(runtime).drain())

    by_subject = {
        message.headers["Subject"]: message for message in sink.handler.messages
    }
    opened = by_subject["Daily history: 1 rows on 2026-05-04"]
    name, content_type, content = attachment_of(opened.content)
    assert name == "Daily-history-2026-05-04.csv"
    (row,) = list(csv.DictReader(io.StringIO(content.decode("utf-8"))))
    assert row["job"] == "Open orders"
    assert row["outcome"] == "succeeded"
    assert row["reply_text"] == f"2.0.0 OK queued as {sink.handler.messages[0].id}"

    overview = by_subject["Schedule overview: 3 rows on 2026-05-04"]
    name, content_type, content = attachment_of(overview.content)
    assert content_type == "application/pdf"
    text = pypdf.PdfReader(io.BytesIO(content)).pages[0].extract_text()
    assert "Schedule List - page 1" in text
    assert "Daily history" in text
    assert "Open orders" in text


def test_inline_html_table_delivered(
    jobs_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    sink = start_sink()
    point_profile(jobs_runtime, sink.port)
    clock = FakeClock(utc(2026, 5, 4, 11, 59))
    add_job(
        jobs_runtime,
        clock.now,
        format="html",
        body="Good morning,\n\nthe {{ rows }} open orders are below.",
    )
    clock.now = utc(2026, 5, 4, 12, 0)
    Scheduler(jobs_runtime, clock=clock).run_due()
    asyncio.run(Worker(jobs_runtime).drain())

    parsed = message_from_bytes(sink.handler.messages[0].content, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    html_part = parsed.get_body(("html",))
    text_part = parsed.get_body(("plain",))
    assert html_part is not None
    assert text_part is not None
    html = html_part.get_content()
    assert "<p>the 25 open orders are below.</p>" in html
    assert "<th>customer</th>" in html
    assert "<td>Customer 25</td>" in html
    assert list(parsed.iter_attachments()) == []
    assert "the 25 open orders are below." in text_part.get_content()


def test_history_filters_by_job_and_client(
    any_jobs_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    runtime = any_jobs_runtime
    sink = start_sink()
    point_profile(runtime, sink.port)
    clock = FakeClock(utc(2026, 5, 4, 11, 59))
    add_job(runtime, clock.now, name="Acme orders", client="Acme")
    add_job(runtime, clock.now, name="Globex orders", client="Globex")
    add_job(runtime, clock.now, name="Globex returns", client="Globex")
    clock.now = utc(2026, 5, 4, 12, 0)
    assert len(Scheduler(runtime, clock=clock).run_due()) == 3

    def jobs(**filters: str) -> list[str]:
        return sorted(run["job"] for run in history(runtime, clock, **filters))

    assert jobs() == ["Acme orders", "Globex orders", "Globex returns"]
    assert jobs(job="Globex returns") == ["Globex returns"]
    assert jobs(client="Globex") == ["Globex orders", "Globex returns"]
    assert jobs(client="Acme", job="Globex orders") == []
    assert jobs(client="Initech") == []
