"""Write the benchmark's figures to a Markdown page."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from harness import ROOT


def _rounds(ceilings: list[float], engines: list[float]) -> str:
    return ", ".join(
        f"{e:.0f}/{c:.0f} = {e / c:.2f}" for c, e in zip(ceilings, engines, strict=True)
    )


def median_ratio(ceilings: list[float], engines: list[float]) -> float:
    """Return the median of the rounds' ratios.

    Each round's engine runs follow its ceiling run at once, so the ratio
    within a round is the least disturbed by load that drifts.
    """
    return statistics.median(e / c for c, e in zip(ceilings, engines, strict=True))


def write_report(results: dict[str, Any], path: Path) -> None:
    args = results["args"]
    shared = any(row.get("shared") for row in results["throughput"])
    lines = [
        "# Benchmarks",
        "",
        "Figures from one run of `bench/run.py`, which rewrites this page and",
        "appends `bench/notes.md` to it. Each comparison was measured side by",
        "side in the same run, in alternating rounds; the tables show medians.",
        "",
        f"- Date: {results['date']}",
        f"- Command: `{results['command']}`",
        f"- Machine: {results['hardware']}.",
        "- PostgreSQL runs with this machine's settings (above). The engine",
        "  commits claims and outcomes with `synchronous_commit = off` (see",
        "  docs/delivery.md). Between rounds the benchmark empties the outbox",
        "  and vacuums its tables, as autovacuum would.",
        "- The machine is shared with other work, so figures move between runs.",
        "- Sinks: `bench/sink.py`, a minimal asyncio SMTP server in its own",
        "  process that stores nothing.",
        "",
        "## Throughput against a fast sink",
        "",
        f"{args.messages:,} messages of about 1 KB, one recipient each, over "
        f"{args.connections} connections.",
        "*Ceiling*: aiosmtplib `sendmail` over the same number of reused",
        "connections, with nothing else to do. *Engine*: `Worker.drain()` in",
        "the benchmark process, from messages already queued to every outcome",
        "committed, logging one JSON line per attempt as `postroom worker` does.",
        "",
        "*SMTP layer*: Postroom's delivery sessions sending the same messages",
        "over as many connections, with no database and no outcomes. As in",
        "the engine, they pipeline MAIL, RCPT and DATA and send them with the",
        "previous message's final dot, which aiosmtplib does not.",
        "",
        "The ratio is the median of the rounds' ratios; each round runs the",
        "engine right after its ceiling, on the same messages.",
        "",
        *(
            [
                "The sink runs on one core and the benchmark process, ceiling",
                "and engine alike, on the others (`sched_setaffinity`), as a",
                "provider's server would not share the sender's CPU.",
                "",
            ]
            if all(row.get("cores_apart") for row in results["throughput"])
            else []
        ),
        *(
            [
                "On PostgreSQL the database server's processes run on the",
                "sink's core while the engine runs, as a worker's database",
                "server runs on a machine of its own, or at least on cores",
                "the worker does not use. Each round then runs the engine",
                "again with the server's processes wherever the scheduler",
                "puts them, so sharing the engine's core: that figure is",
                "reported below the table, and the target is not judged on it.",
                "",
            ]
            if shared
            else []
        ),
        "| database | ceiling (msg/s) | SMTP layer (msg/s) | engine (msg/s) "
        "| engine / ceiling | target |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in results["throughput"]:
        verdict = "met" if row["ratio"] >= 0.8 else "missed"
        lines.append(
            f"| {row['database']} | {row['ceiling']:.0f} | {row['layer']:.0f} | "
            f"{row['engine']:.0f} | {row['ratio']:.3f} | ≥ 0.80: {verdict} |"
        )
    for row in results["throughput"]:
        rounds = _rounds(row["ceilings"], row["engines"])
        lines += ["", f"Rounds on {row['database']} (engine/ceiling): {rounds}."]
        if row.get("shared"):
            lines += [
                "",
                f"Rounds on {row['database']} with the server's processes on "
                f"any core: {_rounds(row['ceilings'], row['shared'])}; median "
                f"ratio {median_ratio(row['ceilings'], row['shared']):.3f}.",
            ]

    scale = results["scale_out"]
    verdict = "met" if scale["ratio"] >= 1.8 else "missed"
    lines += [
        "",
        "## One against two workers (PostgreSQL, DATA answered after 20 ms)",
        "",
        f"{args.scale_messages:,} messages queued in one transaction to idle "
        f"`postroom worker` processes with {args.connections} connections each "
        f"(`POSTROOM_WORKER_CONCURRENCY={args.connections}`, profile limit "
        f"{2 * args.connections}); time from the commit to the last message "
        "recorded as sent.",
        "",
        "| workers | msg/s |",
        "| --- | ---: |",
        f"| 1 | {scale['one']:.0f} |",
        f"| 2 | {scale['two']:.0f} |",
        "",
        f"Two workers send {scale['ratio']:.2f} times as many messages per second "
        f"as one (target ≥ 1.8: {verdict}). Rounds: one "
        + ", ".join(f"{rate:.0f}" for rate in scale["rates"][1])
        + "; two "
        + ", ".join(f"{rate:.0f}" for rate in scale["rates"][2])
        + ".",
        "",
        "## Idle-engine latency",
        "",
        "One message at a time is queued to an idle engine, 20-60 ms apart.",
        "Latency is from just before the commit to the DATA command at the",
        "sink. On SQLite the worker runs in the queueing process and wakes",
        "in-process; on PostgreSQL it is a `postroom worker` process woken",
        "by NOTIFY. The pooled connection stays open between messages.",
        "",
        "| database | samples | p50 (ms) | p99 (ms) | max (ms) | target p99 ≤ 50 ms |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in results["latency"]:
        verdict = "met" if row["p99"] <= 50 else "missed"
        lines.append(
            f"| {row['database']} | {row['samples']} | {row['p50']:.1f} | "
            f"{row['p99']:.1f} | {row['max']:.1f} | {verdict} |"
        )
    lines += [
        "",
        "## Memory against the queue's length",
        "",
        "A `postroom worker` process (4 connections, PostgreSQL) works through",
        f"a queue filled with SQL; its peak resident memory (VmHWM) is read after "
        f"it has sent {args.memory_send:,} messages.",
        "",
        "| queued | peak RSS (MiB) | msg/s meanwhile |",
        "| ---: | ---: | ---: |",
    ]
    for row in results["memory"]:
        lines.append(
            f"| {row['queued']:,} | {row['peak_rss_mib']:.1f} | {row['rate']:.0f} |"
        )
    if len(results["memory"]) >= 2:
        first, last = results["memory"][0], results["memory"][-1]
        growth = last["peak_rss_mib"] - first["peak_rss_mib"]
        lines += [
            "",
            f"From {first['queued']:,} to {last['queued']:,} queued messages the "
            f"peak changes by {growth:+.1f} MiB: whatever the queue's length, a "
            "worker holds at most two claim batches waiting for a sender, and a "
            "few messages per sender being sent or recorded.",
        ]
    notes = ROOT / "bench" / "notes.md"
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    path.write_text("\n".join(lines) + "\n")
