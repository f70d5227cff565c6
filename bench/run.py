"""Delivery engine benchmark: run it in one go, it writes docs/benchmarks.md.

    .venv/bin/python bench/run.py [--messages 5000] [--connections 4] [--quick]

It needs the PostgreSQL server in POSTROOM_TEST_PG_URL (default
postgres@127.0.0.1:5432, as the tests use), creates its own database there
and drops it at the end. Every sink runs in a process of its own
(bench/sink.py), so it does not share the worker's CPU time.

Measured, each side by side in the same run:

1. Messages per second from queued to recorded as accepted by a fast sink,
   for the engine on SQLite and on PostgreSQL, next to the ceiling:
   aiosmtplib sending the same messages over the same number of reused
   connections. Postroom's SMTP layer alone, without the database, is
   measured alongside. Rounds alternate and the median is reported.
2. One against two `postroom worker` processes on PostgreSQL, each with the
   same number of connections, against a sink that answers DATA after 20 ms.
3. Idle-engine latency: time from the commit of a message to the DATA
   command at the sink, on SQLite (in-process wakeup) and on PostgreSQL
   (NOTIFY to a worker process).
4. Peak memory of a `postroom worker` process working through 100,000 and
   1,000,000 queued messages.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
from harness import (
    ROOT,
    Database,
    Sink,
    WorkerProcess,
    configure_logging,
    cores_apart,
    count_status,
    drafts,
    fill_queue,
    hardware,
    open_bench_runtime,
    postgres_database,
    postgres_postmaster,
    queue_messages,
    reset,
    set_profile,
    wait_until_sent,
    worker_env,
)
from report import median_ratio, write_report

from postroom.domain.db import transaction
from postroom.domain.models import MessageStatus
from postroom.mime.build import build_message
from postroom.outbox.queue import store_message
from postroom.outbox.worker import Worker
from postroom.runtime import Runtime
from postroom.smtp.session import MailTransaction, SmtpSession
from postroom.smtp.settings import ConnectionSettings


async def send_directly(
    port: int, envelopes: list[tuple[str, list[str], bytes]], connections: int
) -> float:
    """The ceiling: aiosmtplib over reused connections; return messages/s."""
    pending = collections.deque(envelopes)

    async def one_connection() -> None:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, local_hostname="bench.example.com"
        )
        await client.connect()
        while pending:
            sender, recipients, raw = pending.popleft()
            await client.sendmail(sender, recipients, raw)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return len(envelopes) / (time.perf_counter() - started)


async def send_with_sessions(
    port: int, envelopes: list[tuple[str, list[str], bytes]], connections: int
) -> float:
    """Postroom's SMTP layer alone, as deliveries use it; return messages/s.

    No database, no outcomes: this separates what the SMTP client costs
    from what the rest of the engine adds.
    """
    pending = collections.deque(envelopes)
    settings = ConnectionSettings(
        host="127.0.0.1", port=port, security="none", ehlo_name="bench.example.com"
    )

    async def one_connection() -> None:
        session = SmtpSession.for_delivery(settings)
        await session.open()
        current = pending.popleft() if pending else None
        while current is not None:
            following = pending.popleft() if pending else None
            sender, recipients, raw = current
            # Announced with this message's final dot, as the engine does.
            then = (
                MailTransaction(following[0], tuple(following[1]), following[2])
                if following is not None
                else None
            )
            await session.send(sender, recipients, raw, then=then)
            current = following
        await session.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return len(envelopes) / (time.perf_counter() - started)


def engine_rate(runtime: Runtime, count: int) -> float:
    """Drain ``count`` queued messages; return messages/s."""
    worker = Worker(runtime)
    started = time.perf_counter()
    attempts = asyncio.run(worker.drain())
    elapsed = time.perf_counter() - started
    sent = count_status(runtime, MessageStatus.SENT)
    if attempts != count or sent != count:
        raise RuntimeError(f"expected {count} sent, got {sent} ({attempts} attempts)")
    return count / elapsed


def throughput(
    database: Database, data_dir: Path, messages: int, connections: int, rounds: int
) -> dict[str, Any]:
    """Measure the ceiling and the engine side by side, in alternating rounds.

    On PostgreSQL each round runs the engine twice: with the server's
    processes on the sink's core, which is the figure the target applies
    to, and with them wherever the scheduler puts them.
    """
    print(f"throughput on {database.label}...", flush=True)
    sink = Sink()
    runtime = open_bench_runtime(
        data_dir, database.url, worker_concurrency=connections, log_level="INFO"
    )
    set_profile(runtime, sink.port, connections)
    postmaster = (
        postgres_postmaster(runtime)
        if runtime.engine.dialect.name == "postgresql"
        else None
    )
    ceilings: list[float] = []
    layers: list[float] = []
    engines: list[float] = []
    shared: list[float] = []
    cores = None
    try:
        with cores_apart(sink) as cores:
            for _round in range(rounds):
                reset(runtime)
                envelopes = queue_messages(runtime, messages)
                ceilings.append(
                    asyncio.run(send_directly(sink.port, envelopes, connections))
                )
                layers.append(
                    asyncio.run(send_with_sessions(sink.port, envelopes, connections))
                )
                apart = (
                    cores.server_apart(postmaster)
                    if cores is not None
                    else contextlib.nullcontext(False)
                )
                with apart as server_apart:
                    engines.append(engine_rate(runtime, messages))
                if server_apart:
                    reset(runtime)
                    queue_messages(runtime, messages)
                    shared.append(engine_rate(runtime, messages))
                print(
                    f"  round: ceiling {ceilings[-1]:.0f}/s, SMTP layer "
                    f"{layers[-1]:.0f}/s, engine {engines[-1]:.0f}/s"
                    + (f", database on any core {shared[-1]:.0f}/s" if shared else ""),
                    flush=True,
                )
    finally:
        runtime.close()
        sink.stop()

    return {
        "database": database.label,
        "ceiling": statistics.median(ceilings),
        "engine": statistics.median(engines),
        "ratio": median_ratio(ceilings, engines),
        "ceilings": ceilings,
        "layer": statistics.median(layers),
        "engines": engines,
        "cores_apart": cores is not None,
        # Empty if the server's processes could not be moved in every round.
        "shared": shared if len(shared) == rounds else [],
    }


def scale_out(
    pg_url: str, data_dir: Path, messages: int, connections: int, rounds: int
) -> dict[str, Any]:
    print("one against two workers on PostgreSQL, 20 ms sink...", flush=True)
    sink = Sink(data_delay_ms=20)
    runtime = open_bench_runtime(data_dir, pg_url)
    set_profile(runtime, sink.port, 2 * connections)
    env = worker_env(runtime, data_dir, worker_concurrency=connections)
    rates: dict[int, list[float]] = {1: [], 2: []}
    try:
        for _round in range(rounds):
            for count in (1, 2):
                reset(runtime)
                workers = [
                    WorkerProcess(env, data_dir / f"scale-{count}-{index}.log")
                    for index in range(count)
                ]
                time.sleep(2)  # started, listening and idle
                queue_messages(runtime, messages)
                started = time.perf_counter()
                wait_until_sent(runtime, messages)
                rates[count].append(messages / (time.perf_counter() - started))
                for worker in workers:
                    worker.stop()
                print(f"  {count} worker(s): {rates[count][-1]:.0f}/s", flush=True)
    finally:
        runtime.close()
        sink.stop()
    one = statistics.median(rates[1])
    two = statistics.median(rates[2])
    return {"one": one, "two": two, "ratio": two / one, "rates": rates}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def idle_latency(database: Database, data_dir: Path, samples: int) -> dict[str, Any]:
    """Queue one message at a time to an idle engine; time commit to DATA."""
    print(f"idle latency on {database.label}...", flush=True)
    sink = Sink(report=True)
    runtime = open_bench_runtime(data_dir, database.url, log_level="INFO")
    set_profile(runtime, sink.port, 4)
    latencies: list[float] = []
    worker_process: WorkerProcess | None = None
    stop_worker = None
    try:
        if database.url is None:
            # SQLite: the worker runs in this process, as in `postroom serve`,
            # and wakes through the in-process callback.
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, daemon=True)
            thread.start()
            stop = asyncio.Event()
            done = asyncio.run_coroutine_threadsafe(Worker(runtime).run(stop), loop)

            def stop_worker() -> None:
                loop.call_soon_threadsafe(stop.set)
                done.result(30)
                loop.call_soon_threadsafe(loop.stop)

        else:
            worker_process = WorkerProcess(
                worker_env(runtime, data_dir), data_dir / "latency-worker.log"
            )
        time.sleep(2)
        for index in range(samples + 5):
            sink.lines.clear()
            with transaction(runtime.sessions) as session:
                built = build_message(drafts(1)[0])
                store_message(session, built, "Bench", source="bench")
                # Taken before the commit, which wakes the worker: on SQLite
                # its thread may run first and send before a later reading.
                committed = time.time()
            deadline = time.monotonic() + 10
            while not sink.lines:
                if time.monotonic() > deadline:
                    raise RuntimeError("a message did not arrive within 10 s")
                time.sleep(0.0005)
            arrived = float(sink.lines[0].split()[0])
            if index >= 5:  # the first ones open the pooled connection
                latencies.append((arrived - committed) * 1000)
            time.sleep(0.02 + (index % 5) * 0.01)
    finally:
        if stop_worker is not None:
            stop_worker()
        if worker_process is not None:
            worker_process.stop()
        runtime.close()
        sink.stop()
    return {
        "database": database.label,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "samples": len(latencies),
    }


def memory(
    pg_url: str, data_dir: Path, sizes: list[int], send: int
) -> list[dict[str, Any]]:
    results = []
    sink = Sink()
    runtime = open_bench_runtime(data_dir, pg_url)
    set_profile(runtime, sink.port, 4)
    env = worker_env(runtime, data_dir, worker_concurrency=4)
    try:
        for size in sizes:
            print(f"memory with {size:,} queued...", flush=True)
            reset(runtime)
            fill_queue(runtime, size)
            worker = WorkerProcess(env, data_dir / f"memory-{size}.log")
            started = time.perf_counter()
            wait_until_sent(runtime, send)
            elapsed = time.perf_counter() - started
            peak = worker.peak_rss_kib()
            worker.stop()
            results.append(
                {
                    "queued": size,
                    "sent": send,
                    "peak_rss_mib": peak / 1024,
                    "rate": send / elapsed,
                }
            )
            print(f"  peak RSS {peak / 1024:.1f} MiB", flush=True)
    finally:
        runtime.close()
        sink.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale-messages", type=int, default=3000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--memory-send", type=int, default=5000)
    parser.add_argument(
        "--memory-sizes",
        default="100000,1000000",
        help="Queue lengths, comma-separated.",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="postroom-bench-") as temp:
        base = Path(temp)
        configure_logging(base / "bench.log")
        results: dict[str, Any] = {
            "args": args,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python bench/run.py " + " ".join(sys.argv[1:]),
            "hardware": hardware(),
        }
        with postgres_database() as pg_url:
            databases = [Database(None, "SQLite"), Database(pg_url, "PostgreSQL")]
            results["throughput"] = [
                throughput(
                    database,
                    base / f"throughput-{database.label}",
                    args.messages,
                    args.connections,
                    args.rounds,
                )
                for database in databases
            ]
            results["scale_out"] = scale_out(
                pg_url,
                base / "scale",
                args.scale_messages,
                args.connections,
                args.rounds,
            )
            results["latency"] = [
                idle_latency(
                    database, base / f"latency-{database.label}", args.latency_samples
                )
                for database in databases
            ]
            sizes = [int(size) for size in args.memory_sizes.split(",")]
            results["memory"] = memory(pg_url, base / "memory", sizes, args.memory_send)
        write_report(results, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
