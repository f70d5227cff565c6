"""Text output of `postroom job ...`: jobs, runs and next runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer

from postroom.cli.common import print_fields, print_table


def _local_text(run: dict[str, Any]) -> str:
    local = datetime.fromisoformat(run["local"])
    return f"{local:%Y-%m-%d %H:%M} {run['abbreviation']} (UTC{local:%z})"


def print_next_runs(view: dict[str, Any]) -> None:
    rows = [
        {
            "#": index,
            f"local ({view['time_zone']})": _local_text(run),
            "utc": run["utc"].strftime("%Y-%m-%d %H:%M UTC"),
            "note": run["note"],
        }
        for index, run in enumerate(view["runs"], start=1)
    ]
    if not rows:
        typer.echo("no runs to come")
        return
    print_table(rows, list(rows[0]))


def print_job(view: dict[str, Any], next_runs: dict[str, Any] | None = None) -> None:
    last = view["last_run"]
    shown = {
        "name": view["name"],
        "client": view["client"],
        "schedule": f"{view['schedule']} ({view['time_zone']})",
        "cron": view["cron"] or f"once at {view['run_at']}",
        "report": _report_text(view["report"]),
        "format": view["format"],
        "to": ", ".join(view["to"]),
        "cc": ", ".join(view["cc"]),
        "bcc": ", ".join(view["bcc"]),
        "profile": view["profile"],
        "active": view["is_active"],
        "on_empty": view["on_empty"],
        "next_run": view["next_run_local"],
        "running": f"yes (run {view['running_run']})" if view["running"] else "no",
        "last_run": run_text(last) if last else None,
    }
    print_fields(shown)
    if next_runs is not None:
        typer.echo("\nnext runs:")
        print_next_runs(next_runs)


def _report_text(report: dict[str, Any]) -> str:
    if report.get("kind") == "sql":
        return f"sql on {report.get('data_source')}: {report.get('query')}"
    details = ", ".join(
        f"{key}={value}" for key, value in report.items() if key != "kind"
    )
    return f"{report.get('kind')}" + (f" ({details})" if details else "")


def run_text(run: dict[str, Any]) -> str:
    at = run["started_at"] or run["scheduled_for"]
    text = f"{run['outcome']}"
    if run["failed_in"]:
        text += f" ({run['failed_in']})"
    if at is not None:
        text += f" at {at:%Y-%m-%d %H:%M} UTC"
    return text


def print_run(view: dict[str, Any]) -> None:
    print_fields(
        {
            "run": view["id"],
            "job": view["job"],
            "trigger": view["trigger"],
            "started_at": view["started_at"],
            "finished_at": view["finished_at"],
            "outcome": view["outcome"],
            "failed_in": view["failed_in"],
            "delivery": view["delivery"],
            "rows": view["rows"],
            "error": view["error"],
        }
    )
    diagnosis = view["diagnosis"] or {}
    if diagnosis.get("cause"):
        typer.echo(f"cause:  {diagnosis['cause']}")
    if diagnosis.get("fix"):
        typer.echo(f"fix:    {diagnosis['fix']}")
    for message in view["messages"]:
        typer.echo(
            f"\nmessage {message['id']} {message['message_id']}: {message['status']}"
        )
        print_table(
            message["recipients"],
            ["address", "kind", "status", "reply_code", "reply_text"],
        )


def print_runs(runs: list[dict[str, Any]]) -> None:
    print_table(
        [
            {
                "run": run["id"],
                "at_utc": (run["started_at"] or run["scheduled_for"]),
                "trigger": run["trigger"],
                "outcome": run["outcome"],
                "failed_in": run["failed_in"],
                "delivery": run["delivery"],
                "rows": run["rows"],
                "error": run["error"],
            }
            for run in runs
        ],
        [
            "run",
            "at_utc",
            "trigger",
            "outcome",
            "failed_in",
            "delivery",
            "rows",
            "error",
        ],
    )
