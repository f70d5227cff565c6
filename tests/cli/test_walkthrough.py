"""The README's walk-through, run word for word as a new user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.peers.blackhole import closed_port

ROOT = Path(__file__).resolve().parents[2]


def walkthrough_script() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(
        r"<!-- walkthrough -->\s*```bash\n(.*?)```\s*<!-- /walkthrough -->",
        readme,
        re.S,
    )
    assert match, "README.md has no walk-through block"
    return match.group(1)


def test_readme_walkthrough_runs(tmp_path: Path) -> None:
    # Only the port changes, so parallel test runs do not collide.
    port = closed_port()
    script = walkthrough_script().replace("2525", str(port))
    env = dict(os.environ)
    env["POSTROOM_DATA_DIR"] = str(tmp_path / "data")
    env.pop("POSTROOM_DATABASE_URL", None)
    env.pop("POSTROOM_SECRET_KEY", None)
    venv = Path(sys.executable).parent.parent
    # The walk-through sources .venv/bin/activate from the repository.
    assert (ROOT / ".venv" / "bin" / "activate").exists() or venv.joinpath(
        "bin/activate"
    ).exists()

    completed = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "OK: the server accepted the test email to alice@example.com" in output
    assert re.search(
        r"bob@example.com\s+to\s+accepted\s+250\s+2\.0\.0 OK queued as \S+", output
    ), output
    assert "status             sent" in output
    stored = list((tmp_path / "data" / "sink").glob("*.eml"))
    assert len(stored) == 2
