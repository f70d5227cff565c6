"""The `cli` fixture: run `postroom` commands in-process on a fresh data directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from postroom.cli.main import app

Invoke = Callable[..., Result]


@pytest.fixture
def cli(tmp_path: Path) -> Invoke:
    runner = CliRunner()
    env = {
        "POSTROOM_DATA_DIR": str(tmp_path / "data"),
        "POSTROOM_DATABASE_URL": "",
        "POSTROOM_SECRET_KEY": "",
    }

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(app, list(args), env=env, input=stdin)

    return invoke
