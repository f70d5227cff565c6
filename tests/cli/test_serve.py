"""`postroom serve` as a real process: API, in-process worker, clean stop."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from postroom.devserver.sink import SinkServer
from tests.peers.blackhole import closed_port

PASSWORD = "serve-Secret-Pw-77"


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def test_serve_delivers_and_stops_cleanly(
    tmp_path: Path, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink(users={"alice": PASSWORD})
    port = closed_port()
    env = dict(
        os.environ, POSTROOM_DATA_DIR=str(tmp_path / "data"), POSTROOM_LOG_LEVEL="DEBUG"
    )
    env.pop("POSTROOM_DATABASE_URL", None)
    env.pop("POSTROOM_SECRET_KEY", None)
    postroom = [sys.executable, "-m", "postroom.cli.main"]
    token = subprocess.run(
        [*postroom, "token", "create", "test"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    process = subprocess.Popen(
        [*postroom, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
        )
        wait_for(lambda: client.get("/api/health").status_code == 200)
        created = client.post(
            "/api/profiles",
            json={
                "name": "Orders",
                "host": "127.0.0.1",
                "port": server.port,
                "security": "none",
                "login": "alice",
                "password": PASSWORD,
                "confirm_password": PASSWORD,
                "from": "orders@example.com",
            },
        )
        assert created.status_code == 201
        queued = client.post(
            "/api/messages",
            json={
                "profile": "Orders",
                "to": ["bob@example.com"],
                "subject": "S",
                "text": "T",
            },
        ).json()

        shown = wait_for(
            lambda: (
                (answer := client.get(f"/api/messages/{queued['id']}").json())["status"]
                == "sent"
                and answer
            )
        )
        assert shown["recipients"][0]["reply_code"] == 250
        assert len(server.handler.messages) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        _stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 0, stderr
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert "delivery attempt sent" in [line["message"] for line in logged]
    assert "delivery worker stopped" in stderr
    assert "color_message" not in stderr
    assert PASSWORD not in stderr
    assert base64.b64encode(PASSWORD.encode()).decode() not in stderr
