"""Run `postroom worker`, `serve` and `sink` as real processes in tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from postroom.devserver.sink import free_port
from postroom.runtime import Runtime

POSTROOM = str(Path(sys.executable).parent / "postroom")


class Process:
    """A postroom command running in its own process, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.popen = subprocess.Popen(
            [POSTROOM, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.popen.wait(timeout)
        finally:
            self._log.close()

    def stop(self) -> int | None:
        """Ask the process to stop (SIGTERM); kill it if it does not."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


def process_env(runtime: Runtime, data_dir: Path, **settings: Any) -> dict[str, str]:
    """Environment for a postroom process on the same database and key."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("POSTROOM_")
    }
    env["POSTROOM_DATA_DIR"] = str(data_dir)
    env["POSTROOM_DATABASE_URL"] = runtime.settings.effective_database_url
    env["POSTROOM_SECRET_KEY"] = runtime.settings.secret_key or ""
    env["POSTROOM_LOG_LEVEL"] = "INFO"
    env["POSTROOM_LOG_FORMAT"] = "text"
    for name, value in settings.items():
        env[f"POSTROOM_{name.upper()}"] = str(value)
    return env


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


def start_sink_process(
    folder: Path, env: dict[str, str], log_path: Path, data_delay_ms: int = 0
) -> tuple[Process, int]:
    port = free_port()
    sink = Process(
        [
            "sink",
            "--port",
            str(port),
            "--folder",
            str(folder),
            "--data-delay-ms",
            str(data_delay_ms),
        ],
        env,
        log_path,
    )
    wait_for_port(port)
    return sink, port
