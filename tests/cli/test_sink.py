"""`postroom sink` as a real process with STARTTLS and AUTH."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from postroom.cli.main import app
from tests.peers.blackhole import closed_port
from tests.peers.certs import Certificates


def test_sink_with_starttls_and_auth(
    tmp_path: Path, certificates: Certificates
) -> None:
    port = closed_port()
    env = dict(os.environ, POSTROOM_DATA_DIR=str(tmp_path / "data"))
    env.pop("POSTROOM_DATABASE_URL", None)
    env.pop("POSTROOM_SECRET_KEY", None)
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "postroom.cli.main",
            "sink",
            "--port",
            str(port),
            "--tls-cert",
            str(certificates.localhost.cert_file),
            "--tls-key",
            str(certificates.localhost.key_file),
            "--auth",
            "alice:sink-pw",
            "--folder",
            str(tmp_path / "mail"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runner = CliRunner()
    try:
        deadline = time.monotonic() + 20
        while "listening" not in (sink.stderr.readline() if sink.stderr else ""):
            assert time.monotonic() < deadline, "sink did not start"
        created = runner.invoke(
            app,
            [
                "profile",
                "create",
                "Local",
                "--host",
                "localhost",
                "--port",
                str(port),
                "--security",
                "starttls",
                "--login",
                "alice",
                "--password-stdin",
                "--from",
                "orders@example.com",
                "--ca-bundle",
                str(certificates.ca_file),
            ],
            env=env,
            input="sink-pw\n",
        )
        assert created.exit_code == 0, created.output
        tested = runner.invoke(
            app, ["profile", "test", "Local", "--to", "bob@example.com"], env=env
        )
    finally:
        sink.send_signal(signal.SIGTERM)
        stdout, _stderr = sink.communicate(timeout=20)

    assert tested.exit_code == 0, tested.output
    assert "TLS established" in tested.stdout
    assert "received " in stdout
    assert "to <bob@example.com>" in stdout
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1
    assert sink.returncode == 0


def test_sink_rejects_half_tls_options(
    tmp_path: Path, certificates: Certificates
) -> None:
    result = CliRunner().invoke(
        app,
        ["sink", "--tls-cert", str(certificates.localhost.cert_file)],
        env={"POSTROOM_DATA_DIR": str(tmp_path)},
    )

    assert result.exit_code == 2
    assert "--tls-cert and --tls-key must be given together" in result.stderr
