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
   connections. Rounds alternate and the median is reported.
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
import logging
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiosmtplib
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from postroom.config import Settings
from postroom.crypto import generate_key
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.models import MessageStatus, OutboxMessage
from postroom.logs import JsonFormatter
from postroom.mime.build import MessageDraft, build_message
from postroom.outbox.queue import store_message
from postroom.outbox.worker import Worker
from postroom.runtime import Runtime, open_runtime

ROOT = Path(__file__).resolve().parent.parent
POSTROOM = str(Path(sys.executable).parent / "postroom")
PG_ADMIN_URL = os.environ.get(
    "POSTROOM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Sink:
    """bench/sink.py in its own process."""

    def __init__(self, data_delay_ms: float = 0.0, report: bool = False) -> None:
        self.port = free_port()
        args = [
            sys.executable,
            str(ROOT / "bench" / "sink.py"),
            "--port",
            str(self.port),
            "--data-delay-ms",
            str(data_delay_ms),
        ]
        if report:
            args.append("--report")
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE if report else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: collections.deque[str] = collections.deque()
        if report:
            assert self.process.stdout is not None
            self._reader = threading.Thread(
                target=self._read, args=(self.process.stdout,), daemon=True
            )
            self._reader.start()
        wait_for_port(self.port)

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(10)


@dataclass
class Database:
    url: str | None  # None: a SQLite file in the runtime's data directory
    label: str


@contextmanager
def postgres_database() -> Iterator[str]:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"postroom_bench_{os.getpid()}_{secrets.token_hex(2)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            make_url(PG_ADMIN_URL)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def open_bench_runtime(data_dir: Path, url: str | None, **settings: Any) -> Runtime:
    return open_runtime(
        Settings(
            data_dir=data_dir,
            database_url=url,
            secret_key=generate_key(),
            **settings,
        )
    )


def reset(runtime: Runtime) -> None:
    """Empty the outbox and the rate counts between rounds."""
    with runtime.engine.begin() as connection:
        for table in ("delivery_attempts", "message_recipients", "messages"):
            connection.execute(text(f"DELETE FROM {table}"))
        connection.execute(text("DELETE FROM profile_usage"))


def set_profile(runtime: Runtime, port: int, connections: int) -> None:
    with transaction(runtime.sessions) as session:
        data = profiles.ProfileInput(
            name="Bench",
            host="127.0.0.1",
            port=port,
            security="none",
            from_address="Shop <orders@example.com>",
            ehlo_name="bench.example.com",
            max_connections=connections,
        )
        if profiles.find_profile(session, "Bench") is None:
            profiles.create_profile(session, runtime.secrets, data)
        else:
            profiles.update_profile(session, runtime.secrets, "Bench", data)


def drafts(count: int) -> list[MessageDraft]:
    return [
        MessageDraft(
            sender="Shop <orders@example.com>",
            to=[f"customer{index}@example.com"],
            subject=f"Order {index} has shipped",
            text=f"Hello,\n\nyour order {index} is on its way.\n" + "Details. " * 40,
        )
        for index in range(count)
    ]


def queue_messages(runtime: Runtime, count: int) -> list[tuple[str, list[str], bytes]]:
    """Queue ``count`` messages; return their envelopes and bytes."""
    envelopes = []
    with transaction(runtime.sessions) as session:
        for draft in drafts(count):
            built = build_message(draft)
            store_message(session, built, "Bench", source="bench")
            envelopes.append(
                (
                    built.envelope_sender,
                    [address for address, _kind in built.recipients],
                    built.raw,
                )
            )
    return envelopes


def count_status(runtime: Runtime, status: MessageStatus) -> int:
    with runtime.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == status)
            )
            or 0
        )


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


def engine_rate(runtime: Runtime, count: int) -> tuple[float, int]:
    """Drain ``count`` queued messages; return messages/s and commits."""
    worker = Worker(runtime)
    started = time.perf_counter()
    attempts = asyncio.run(worker.drain())
    elapsed = time.perf_counter() - started
    sent = count_status(runtime, MessageStatus.SENT)
    if attempts != count or sent != count:
        raise RuntimeError(f"expected {count} sent, got {sent} ({attempts} attempts)")
    return count / elapsed, worker.attempts


def throughput(
    database: Database, data_dir: Path, messages: int, connections: int, rounds: int
) -> dict[str, Any]:
    print(f"throughput on {database.label}...", flush=True)
    sink = Sink()
    runtime = open_bench_runtime(
        data_dir, database.url, worker_concurrency=connections, log_level="INFO"
    )
    set_profile(runtime, sink.port, connections)
    ceilings: list[float] = []
    engines: list[float] = []
    try:
        for _round in range(rounds):
            reset(runtime)
            envelopes = queue_messages(runtime, messages)
            ceilings.append(
                asyncio.run(send_directly(sink.port, envelopes, connections))
            )
            rate, _attempts = engine_rate(runtime, messages)
            engines.append(rate)
            print(
                f"  round: ceiling {ceilings[-1]:.0f}/s, engine {engines[-1]:.0f}/s",
                flush=True,
            )
    finally:
        runtime.close()
        sink.stop()
    ceiling = statistics.median(ceilings)
    engine = statistics.median(engines)
    return {
        "database": database.label,
        "ceiling": ceiling,
        "engine": engine,
        "ratio": engine / ceiling,
        "ceilings": ceilings,
        "engines": engines,
    }


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [POSTROOM, "worker"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def peak_rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def worker_env(runtime: Runtime, data_dir: Path, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
    env["POSTROOM_DATA_DIR"] = str(data_dir)
    env["POSTROOM_DATABASE_URL"] = runtime.settings.effective_database_url
    env["POSTROOM_SECRET_KEY"] = runtime.settings.secret_key or ""
    env["POSTROOM_LOG_LEVEL"] = "INFO"
    for name, value in settings.items():
        env[f"POSTROOM_{name.upper()}"] = str(value)
    return env


def wait_until_sent(runtime: Runtime, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while count_status(runtime, MessageStatus.SENT) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("messages not sent in time")
        time.sleep(0.02)


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


def fill_queue(runtime: Runtime, count: int) -> None:
    """Queue ``count`` copies of one message with SQL alone (PostgreSQL)."""
    built = build_message(drafts(1)[0])
    with runtime.engine.begin() as connection:
        connection.execute(
            text(
                """
                INSERT INTO messages (profile_name, status, source, message_id,
                    envelope_sender, subject, raw, size, smtputf8, created_at,
                    updated_at, next_attempt_at, attempt_count)
                SELECT 'Bench', 'queued', 'bench',
                    '<bench-' || n || '@example.com>', :sender, 'bench', :raw,
                    :size, false, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC',
                    now() AT TIME ZONE 'UTC', 0
                FROM generate_series(1, :count) AS n
                """
            ),
            {
                "sender": built.envelope_sender,
                "raw": built.raw,
                "size": len(built.raw),
                "count": count,
            },
        )
        connection.execute(
            text(
                """
                INSERT INTO message_recipients (message_pk, address, kind, status,
                    updated_at)
                SELECT id, 'customer@example.com', 'to', 'pending',
                    now() AT TIME ZONE 'UTC'
                FROM messages
                """
            )
        )
        connection.execute(text("ANALYZE messages"))
        connection.execute(text("ANALYZE message_recipients"))


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


def hardware() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    with create_engine(PG_ADMIN_URL).connect() as connection:
        pg_version = connection.execute(text("SHOW server_version")).scalar()
        fsync = connection.execute(text("SHOW fsync")).scalar()
        commit = connection.execute(text("SHOW synchronous_commit")).scalar()
    return (
        f"{os.cpu_count()} cores ({model}), {memory_kib / 1024 / 1024:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, PostgreSQL {pg_version} on the same "
        f"machine (fsync {fsync}, synchronous_commit {commit}), SQLite "
        f"{__import__('sqlite3').sqlite_version}"
    )


def configure_logging(log_file: Path) -> None:
    # As `postroom worker` logs by default: one JSON line per attempt.
    handler = logging.StreamHandler(log_file.open("a"))
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def write_report(results: dict[str, Any], path: Path) -> None:
    args = results["args"]
    lines = [
        "# Benchmarks",
        "",
        "Figures from one run of `bench/run.py`, which rewrites this page and",
        "appends `bench/notes.md` to it. Each",
        "comparison was measured side by side in the same run, in alternating",
        "rounds, and the median round is shown.",
        "",
        f"- Date: {results['date']}",
        f"- Command: `{results['command']}`",
        f"- Machine: {results['hardware']}. The machine is shared with other",
        "  work, so figures move by 10-20 % between runs.",
        "- Sinks: `bench/sink.py`, a minimal asyncio SMTP server in its own",
        "  process that stores nothing.",
        "",
        "## Throughput against a fast sink",
        "",
        f"{args.messages:,} messages of about 1 KB, one recipient each, over "
        f"{args.connections} connections. *Ceiling*: aiosmtplib "
        "`sendmail` over the same number of reused connections, with nothing",
        "else to do. *Engine*: `Worker.drain()` in the benchmark process, from",
        "messages already queued to every outcome committed, logging one JSON",
        "line per attempt as `postroom worker` does.",
        "",
        "| database | ceiling (msg/s) | engine (msg/s) | engine / ceiling | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in results["throughput"]:
        verdict = "met" if row["ratio"] >= 0.8 else "missed"
        lines.append(
            f"| {row['database']} | {row['ceiling']:.0f} | {row['engine']:.0f} | "
            f"{row['ratio']:.2f} | ≥ 0.80: {verdict} |"
        )
    for row in results["throughput"]:
        rounds = ", ".join(
            f"{c:.0f}/{e:.0f}"
            for c, e in zip(row["ceilings"], row["engines"], strict=True)
        )
        lines.append("")
        lines.append(f"Rounds on {row['database']} (ceiling/engine): {rounds}.")

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
        "One message at a time is queued to an idle engine, 20-60 ms apart;",
        "latency is from the commit to the DATA command at the sink. On SQLite",
        "the worker runs in the queueing process and wakes in-process; on",
        "PostgreSQL it is a `postroom worker` process woken by NOTIFY. The",
        "pooled connection stays open between messages.",
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
            f"peak grows by {growth:.1f} MiB: a worker holds at most two claim "
            "batches in memory, whatever the queue's length.",
        ]
    notes = ROOT / "bench" / "notes.md"
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    path.write_text("\n".join(lines) + "\n")


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
