"""`postroom job ...` and `postroom report ...`: output, exit statuses, and a
job that is refused a second run from another process."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from typer.testing import CliRunner, Result

from postroom.cli.main import app
from postroom.devserver.sink import SinkServer
from tests.schedule.helpers import make_sales_db

Invoke = Callable[..., Result]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    sales = make_sales_db(tmp_path / "sales.db")
    return {
        "POSTROOM_DATA_DIR": str(tmp_path / "data"),
        "POSTROOM_DATABASE_URL": "",
        "POSTROOM_SECRET_KEY": "",
        "POSTROOM_DATA_SOURCE_SALES": f"sqlite:///{sales}",
    }


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Invoke:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), env=cli_env)

    return invoke


def create_job(cli: Invoke, *extra: str) -> Result:
    return cli(
        "job",
        "create",
        "Open orders",
        "--cron",
        "30 2 * * *",
        "--tz",
        "America/Chicago",
        "--data-source",
        "sales",
        "--query",
        "SELECT * FROM orders ORDER BY id",
        "--to",
        "ops@example.com",
        *extra,
    )


def use_sink(cli: Invoke, port: int) -> None:
    result = cli(
        "profile",
        "update",
        "DefaultDeliveryProfile",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--security",
        "none",
        "--from",
        "Reports <reports@example.com>",
        "--active",
    )
    assert result.exit_code == 0, result.output


def test_create_prints_next_runs(cli: Invoke) -> None:
    result = create_job(cli)

    assert result.exit_code == 0, result.output
    assert "schedule  At 02:30 (America/Chicago)" in result.stdout
    assert "next runs:" in result.stdout
    assert result.stdout.count(" UTC ") >= 5


def test_next_shows_local_and_utc(cli: Invoke) -> None:
    create_job(cli)

    result = cli("job", "next", "Open orders", "--count", "5", "--after", "2026-03-06")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Open orders: At 02:30 (America/Chicago)"
    assert lines[1].split() == ["#", "LOCAL", "(AMERICA/CHICAGO)", "UTC", "NOTE"]
    assert lines[2].startswith(
        "1  2026-03-06 02:30 CST (UTC-0600)  2026-03-06 08:30 UTC"
    )
    assert lines[4].startswith(
        "3  2026-03-08 03:00 CDT (UTC-0500)  2026-03-08 08:00 UTC"
    )
    assert "02:30 does not exist on 2026-03-08" in lines[4]
    assert lines[5].startswith(
        "4  2026-03-09 02:30 CDT (UTC-0500)  2026-03-09 07:30 UTC"
    )
    assert len(lines) == 7


def test_next_previews_unsaved_schedule(cli: Invoke) -> None:
    result = cli(
        "job",
        "next",
        "--cron",
        "30 1 * * *",
        "--tz",
        "America/Chicago",
        "--after",
        "2026-10-31T12:00Z",
        "--count",
        "2",
        "--json",
    )

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert [run["utc"] for run in shown["runs"]] == [
        "2026-11-01T06:30:00+00:00",
        "2026-11-02T07:30:00+00:00",
    ]
    assert [run["abbreviation"] for run in shown["runs"]] == ["CDT", "CST"]


def test_invalid_schedule_exits_2(cli: Invoke) -> None:
    result = cli(
        "job",
        "create",
        "Never",
        "--cron",
        "0 0 30 2 *",
        "--data-source",
        "sales",
        "--query",
        "SELECT 1",
        "--to",
        "ops@example.com",
    )

    assert result.exit_code == 2
    assert "error: cron: '0 0 30 2 *' never fires: February has no day 30" in (
        result.stderr
    )
    assert cli("job", "list", "--json").stdout.strip() == "[]"


def test_write_query_exits_2(cli: Invoke) -> None:
    result = create_job(cli, "--query", "UPDATE orders SET total = 0")

    assert result.exit_code == 2
    assert "report.query: must be a single SELECT statement" in result.stderr


def test_run_deliver_and_report(
    cli: Invoke, tmp_path: Path, start_sink: Callable[..., SinkServer]
) -> None:
    sink = start_sink()
    use_sink(cli, sink.port)
    create_job(cli, "--format", "xlsx")

    ran = cli("job", "run", "Open orders")
    assert ran.exit_code == 0, ran.output
    assert "outcome      sending" in ran.stdout
    assert "rows         25" in ran.stdout

    drained = cli("worker", "--drain")
    assert drained.exit_code == 0, drained.output
    queue_id = sink.handler.messages[0].id

    history = cli("report", "schedule-history", "--since", "1h", "--format", "csv")
    assert history.exit_code == 0, history.output
    (row,) = list(csv.DictReader(io.StringIO(history.stdout)))
    assert row["job"] == "Open orders"
    assert row["outcome"] == "succeeded"
    assert row["recipient"] == "ops@example.com"
    assert row["reply_code"] == "250"
    assert row["reply_text"] == f"2.0.0 OK queued as {queue_id}"

    def history_jobs(*filters: str) -> list[str]:
        listed = cli(
            "report", "schedule-history", "--since", "1h", "--format", "csv", *filters
        )
        assert listed.exit_code == 0, listed.output
        return [row["job"] for row in csv.DictReader(io.StringIO(listed.stdout))]

    assert history_jobs("--job", "Open orders") == ["Open orders"]
    assert history_jobs("--job", "Closed orders") == []
    assert history_jobs("--client", "Initech") == []

    listed = cli("report", "schedule-list", "--format", "json")
    (item,) = json.loads(listed.stdout)
    assert item["last_outcome"] == "succeeded"
    assert item["schedule"] == "At 02:30"
    assert item["profile"] == "DefaultDeliveryProfile"

    workbook = tmp_path / "list.xlsx"
    saved = cli(
        "report", "schedule-list", "--format", "xlsx", "--output", str(workbook)
    )
    assert saved.exit_code == 0, saved.output
    sheet = openpyxl.load_workbook(workbook).active
    assert sheet is not None
    assert [cell.value for cell in sheet[2]][:2] == ["Open orders", None]

    listed_table = cli("report", "schedule-list")
    assert listed_table.exit_code == 0, listed_table.output
    assert "CRON" in listed_table.stdout
    assert "30 2 * * *" in listed_table.stdout
    assert item["last_run_utc"] in listed_table.stdout

    table = cli("report", "schedule-history", "--since", "1h")
    assert queue_id in table.stdout

    shown = cli("job", "show", "Open orders")
    assert "last_run  succeeded at" in shown.stdout
    assert "latest runs:" in shown.stdout


def test_failed_run_exits_1(cli: Invoke) -> None:
    create_job(cli)

    result = cli("job", "run", "Open orders")

    assert result.exit_code == 1
    assert "outcome      failed" in result.stdout
    assert "has no From address" in result.stdout


def test_delete_needs_yes(cli: Invoke) -> None:
    create_job(cli)

    refused = cli("job", "delete", "Open orders")
    deleted = cli("job", "delete", "Open orders", "--yes")

    assert refused.exit_code == 2
    assert deleted.exit_code == 0
    assert cli("job", "show", "Open orders").exit_code == 1


@pytest.mark.postgres
def test_second_run_from_other_process_refused(
    cli: Invoke,
    cli_env: dict[str, str],
    pg_database_url: str,
    start_sink: Callable[..., SinkServer],
) -> None:
    cli_env["POSTROOM_DATA_SOURCE_WAREHOUSE"] = pg_database_url
    use_sink(cli, start_sink().port)
    created = cli(
        "job",
        "create",
        "Slow",
        "--cron",
        "0 7 * * *",
        "--data-source",
        "warehouse",
        "--query",
        "SELECT pg_sleep(3) AS slept",
        "--to",
        "ops@example.com",
    )
    assert created.exit_code == 0, created.output
    postroom = str(Path(sys.executable).parent / "postroom")
    first = subprocess.Popen(
        [postroom, "job", "run", "Slow"],
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            shown = json.loads(cli("job", "show", "Slow", "--json").stdout)
            if shown["running"]:
                break
            time.sleep(0.1)
        assert shown["running"]

        second = cli("job", "run", "Slow")

        assert second.exit_code == 1
        assert "job 'Slow' is already running" in second.stderr
    finally:
        output, errors = first.communicate(timeout=60)
    assert first.returncode == 0, errors.decode()
    assert b"outcome      sending" in output


def test_refused_email_shows_failed(
    cli: Invoke, start_scripted: Callable[..., Any]
) -> None:
    server = start_scripted(replies={"DATA": "554 5.7.1 Message rejected as spam"})
    use_sink(cli, server.port)
    create_job(cli)
    assert cli("job", "run", "Open orders").exit_code == 0
    cli("worker", "--drain")

    runs = cli("job", "runs", "Open orders")
    history = cli("report", "schedule-history", "--since", "1h", "--format", "csv")
    failed = cli("report", "schedule-history", "--since", "1h", "--outcome", "failed")

    assert runs.stdout.splitlines()[1].split()[3:5] == ["failed", "delivery"]
    (row,) = list(csv.DictReader(io.StringIO(history.stdout)))
    assert row["outcome"] == "failed"
    assert row["failed_in"] == "delivery"
    assert row["reply_text"] == "5.7.1 Message rejected as spam"
    assert "Message rejected as spam" in row["cause"]
    assert "Open orders" in failed.stdout
