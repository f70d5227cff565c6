"""`postroom serve` in a subprocess on a loopback port, for tests over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from postroom.runtime import Runtime
from tests.peers.blackhole import closed_port


@contextmanager
def running_service(
    runtime: Runtime, data_dir: Path, *, worker: bool, **settings: str
) -> Iterator[str]:
    """Start `postroom serve` on the runtime's database; yield its base URL."""
    port = closed_port()
    env = dict(os.environ)
    env["POSTROOM_DATA_DIR"] = str(data_dir)
    env["POSTROOM_DATABASE_URL"] = runtime.settings.effective_database_url
    env["POSTROOM_SECRET_KEY"] = runtime.settings.secret_key or ""
    env["POSTROOM_WORKER_POLL_SECONDS"] = "0.2"
    for name, value in settings.items():
        env[f"POSTROOM_{name.upper()}"] = value
    command = [
        str(Path(sys.executable).parent / "postroom"),
        "serve",
        "--port",
        str(port),
        "--worker" if worker else "--no-worker",
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    "postroom serve exited: " + process.stderr.read().decode()
                    if process.stderr
                    else "postroom serve exited"
                )
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("postroom serve did not answer within 30 s")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
