"""Processes, databases and data the benchmark scenarios share."""

from __future__ import annotations

import collections
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from postroom.config import Settings
from postroom.crypto import generate_key
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.models import MessageStatus, OutboxMessage, Security
from postroom.logs import configure_logging as postroom_logging
from postroom.mime.build import MessageDraft, build_message
from postroom.outbox.queue import store_message
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


class Cores:
    """The benchmark process's cores and the core its peers run on."""

    def __init__(self, own: list[int], peer: list[int]) -> None:
        self.own = own
        self.peer = peer

    @contextmanager
    def server_apart(self, postmaster: int | None) -> Iterator[bool]:
        """Run a local PostgreSQL server's processes on the peers' core.

        A worker's database server runs on a machine of its own, or at
        least on cores the worker does not use. Connections opened meanwhile
        inherit the core from the postmaster. Yields whether the processes
        could be moved; they get their cores back on exit.
        """
        if postmaster is None:
            yield False
            return
        try:
            original = sorted(os.sched_getaffinity(postmaster))
        except OSError:
            yield False
            return
        try:
            _move_process_tree(postmaster, self.peer)
        except OSError:
            _move_process_tree(postmaster, original)
            yield False
            return
        try:
            yield True
        finally:
            _move_process_tree(postmaster, original)


@contextmanager
def cores_apart(sink: Sink) -> Iterator[Cores | None]:
    """Run the sink on the last core and this process on the others.

    A provider's server does not share the sender's CPU. In runs here
    without this, the scheduler often woke the sink on the core of the
    process being measured, which then waited for the core. Yields None
    if the machine has too few cores for it. Processes started meanwhile
    inherit this process's cores, so the scenarios that start workers run
    after.
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        yield None
        return
    os.sched_setaffinity(sink.process.pid, cores[-1:])
    os.sched_setaffinity(0, cores[:-1])
    try:
        yield Cores(cores[:-1], cores[-1:])
    finally:
        os.sched_setaffinity(0, cores)


def _parent_pid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise ProcessLookupError(pid)


def _move_process_tree(parent: int, cores: list[int]) -> None:
    """Set the cores of a process and of its children; skip those that ended."""
    os.sched_setaffinity(parent, cores)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(ProcessLookupError, FileNotFoundError):
            if _parent_pid(int(entry.name)) == parent:
                os.sched_setaffinity(int(entry.name), cores)


def postgres_postmaster(runtime: Runtime) -> int | None:
    """Return the pid of the runtime's PostgreSQL server, if it runs here."""
    with runtime.engine.connect() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    try:
        postmaster = _parent_pid(backend)
        name = Path(f"/proc/{postmaster}/comm").read_text().strip()
    except OSError:
        # In another container or on another machine.
        return None
    return postmaster if name in ("postgres", "postmaster") else None


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


_OUTBOX_TABLES = ("delivery_attempts", "message_recipients", "messages")


def reset(runtime: Runtime) -> None:
    """Empty the outbox and the rate counts between rounds."""
    with runtime.engine.begin() as connection:
        for table in _OUTBOX_TABLES:
            connection.execute(text(f"DELETE FROM {table}"))
        connection.execute(text("DELETE FROM profile_usage"))
    if runtime.engine.dialect.name == "postgresql":
        # The deleted rows and their index entries stay until a vacuum. A
        # server with autovacuum on removes them soon; without this, each
        # round would scan more of them than the last.
        with runtime.engine.connect().execution_options(
            isolation_level="AUTOCOMMIT"
        ) as connection:
            for table in (*_OUTBOX_TABLES, "profile_usage"):
                connection.execute(text(f"VACUUM ANALYZE {table}"))


def set_profile(runtime: Runtime, port: int, connections: int) -> None:
    with transaction(runtime.sessions) as session:
        data = profiles.ProfileInput(
            name="Bench",
            host="127.0.0.1",
            port=port,
            security=Security.NONE,
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
        autovacuum = connection.execute(text("SHOW autovacuum")).scalar()
    return (
        f"{os.cpu_count()} cores ({model}), {memory_kib / 1024 / 1024:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, PostgreSQL {pg_version} on the same "
        f"machine (fsync {fsync}, synchronous_commit {commit}, autovacuum "
        f"{autovacuum}), SQLite "
        f"{__import__('sqlite3').sqlite_version}"
    )


def configure_logging(log_file: Path) -> None:
    # As `postroom worker` logs by default: one JSON line per attempt.
    postroom_logging(stream=log_file.open("a"))
