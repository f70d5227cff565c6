"""Bad CLI input: `error: <field>: ...` and exit status 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from postroom.cli.main import app
from postroom.runtime import Runtime

Invoke = Callable[..., Result]

# The password of a repro script: "é" in Latin-1 is the byte 0xE9, which
# starts no valid UTF-8 sequence.
LATIN1_SECRET = "Latin1-Pa\xe9ss-77"
LONG = "a" * 5000
# Within the 1,000 characters a path column holds, but a single path
# component longer than any file system allows, so looking it up fails with
# "File name too long".
TOO_LONG_NAME = "/tmp/" + "a" * 900


def make_invoke(env: dict[str, str]) -> Invoke:
    runner = CliRunner()

    def invoke(*args: str, stdin: bytes | str | None = None) -> Result:
        return runner.invoke(app, list(args), env=env, input=stdin)

    return invoke


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    return {
        "POSTROOM_DATA_DIR": str(tmp_path / "data"),
        "POSTROOM_DATABASE_URL": "",
        "POSTROOM_SECRET_KEY": "",
    }


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Invoke:
    invoke = make_invoke(cli_env)
    created = invoke(
        "profile",
        "create",
        "P",
        "--host",
        "127.0.0.1",
        "--port",
        "2525",
        "--security",
        "none",
        "--from",
        "a@example.com",
    )
    assert created.exit_code == 0, created.output
    return invoke


def assert_invalid(result: Result, prefix: str) -> None:
    """Check for exit 2 with `error: <field>: ...` and no traceback."""
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {prefix}"), result.stderr


def profile_names(cli: Invoke) -> list[str]:
    shown = cli("profile", "list", "--json")
    assert shown.exit_code == 0, shown.output
    return [profile["name"] for profile in json.loads(shown.stdout)]


CREATE_Q = ("profile", "create", "Q", "--host", "127.0.0.1", "--from", "a@example.com")


@pytest.mark.parametrize(
    ("args", "prefix"),
    [
        ((*CREATE_Q, "--ca-bundle", LONG), "ca_bundle: must be at most 1000"),
        ((*CREATE_Q, "--ca-bundle", TOO_LONG_NAME), "ca_bundle: CA bundle file"),
        (("profile", "kerberos", "P", "--keytab", LONG), "kerberos_keytab: must be"),
        (
            ("profile", "kerberos", "P", "--keytab", TOO_LONG_NAME),
            "kerberos_keytab: keytab file",
        ),
        (
            ("profile", "kerberos", "P", "--config", TOO_LONG_NAME),
            "kerberos_config: Kerberos configuration",
        ),
        ((*CREATE_Q, "--client", "c" * 201), "client: must be at most 200"),
        ((*CREATE_Q, "--login", "l" * 321), "login: must be at most 320"),
        (
            (
                "probe",
                "127.0.0.1",
                "--port",
                "1",
                "--timeout",
                "1",
                "--ca-bundle",
                LONG,
            ),
            "ca_bundle: CA bundle file",
        ),
        (("message", "show", "99999999999999999999999"), "id: must be a whole number"),
        (("message", "show", "2147483648"), "id: must be a whole number"),
        (("message", "show", "0"), "id: must be a whole number"),
        (("event", "show", "99999999999"), "id: must be a whole number"),
        (("message", "list", "--limit", "999999999999999999999"), "limit: must be"),
        (("message", "list", "--limit", "0"), "limit: must be from 1 to 500"),
        (("message", "list", "--status", "bogus"), "status: 'bogus' is not"),
        (
            (
                "send",
                "--profile",
                "P",
                "--to",
                "b@example.com",
                "--subject",
                "a\u2028b",
                "--text",
                "x",
            ),
            "subject: must be a single line",
        ),
        (
            ("job", "next", "--cron", "0 7 * * *", "--after", "99999999h"),
            "after: '99999999h' reaches back",
        ),
        (
            (
                "job",
                "next",
                "--cron",
                "0 7 * * *",
                "--tz",
                "America/Chicago",
                "--after",
                "9999-12-31T23:00Z",
            ),
            "after: no run",
        ),
        (
            ("report", "schedule-history", "--since", "99999999999w"),
            "since: '99999999999w' reaches back",
        ),
        (
            (
                "report",
                "schedule-history",
                "--since",
                "24h",
                "--until",
                "9999-12-31T23:00-05:00",
            ),
            "until:",
        ),
        (
            (
                "profile",
                "client-certificate",
                "P",
                "--certificate",
                TOO_LONG_NAME,
                "--key",
                TOO_LONG_NAME,
            ),
            "--certificate: cannot read",
        ),
        (("sink", "--port", "0", "--folder", TOO_LONG_NAME), "folder: cannot create"),
        (("token", "create", "t" * 201), "name: must be at most 200 characters"),
        (("token", "create", "ci\u2028bot"), "name: must be a single line"),
    ],
)
def test_bad_input_is_error_with_field(
    cli: Invoke, args: tuple[str, ...], prefix: str
) -> None:
    result = cli(*args)

    assert_invalid(result, prefix)
    assert "Q" not in profile_names(cli)


def test_status_error_lists_valid_values(cli: Invoke) -> None:
    result = cli("message", "list", "--status", "bogus")

    assert_invalid(result, "status:")
    for status in ("queued", "sending", "held", "sent", "partially_sent", "failed"):
        assert status in result.stderr


def test_job_runs_limit_checked(cli: Invoke) -> None:
    created = cli(
        "job",
        "create",
        "Daily",
        "--cron",
        "0 7 * * *",
        "--report",
        "schedule-list",
        "--to",
        "ops@example.com",
    )
    assert created.exit_code == 0, created.output

    for limit in ("0", "501", "99999999999999999999"):
        assert_invalid(cli("job", "runs", "Daily", "--limit", limit), "limit: must be")


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (b"\n", "password: standard input was empty"),
        (b"", "password: standard input was empty"),
        (LATIN1_SECRET.encode("latin-1") + b"\n", "password: standard input is not"),
    ],
)
def test_password_stdin_rejected_on_create(
    cli: Invoke, stdin: bytes, message: str
) -> None:
    result = cli(*CREATE_Q, "--login", "u", "--password-stdin", "--json", stdin=stdin)

    assert_invalid(result, message)
    assert "Q" not in profile_names(cli)
    assert "Pa" not in result.output


def test_empty_password_stdin_on_update_keeps_stored(cli: Invoke) -> None:
    created = cli(*CREATE_Q, "--login", "u", "--password-stdin", stdin="first-Pw\n")
    assert created.exit_code == 0, created.output

    result = cli("profile", "update", "Q", "--password-stdin", stdin="\n")

    assert_invalid(result, "password: standard input was empty")
    assert "--password-stdin" in result.stderr
    shown = json.loads(cli("profile", "show", "Q", "--json").stdout)
    assert shown["has_password"] is True


@pytest.mark.parametrize(
    "stdin", [b"\n", LATIN1_SECRET.encode("latin-1") + b"\n"], ids=["empty", "latin1"]
)
def test_probe_password_stdin_rejected(cli: Invoke, stdin: bytes) -> None:
    result = cli(
        "probe",
        "127.0.0.1",
        "--port",
        "1",
        "--timeout",
        "1",
        "--login",
        "u",
        "--password-stdin",
        stdin=stdin,
    )

    assert_invalid(result, "password: standard input")
    assert "Pa" not in result.output


@pytest.mark.parametrize(
    "stdin", [b"\n", LATIN1_SECRET.encode("latin-1") + b"\n"], ids=["empty", "latin1"]
)
def test_oauth_client_secret_stdin_rejected(cli: Invoke, stdin: bytes) -> None:
    result = cli(
        "profile",
        "oauth",
        "configure",
        "P",
        "--provider",
        "microsoft",
        "--client-id",
        "app",
        "--client-secret-stdin",
        stdin=stdin,
    )

    assert_invalid(result, "oauth_client_secret: standard input")
    assert "Pa" not in result.output
    shown = json.loads(cli("profile", "show", "P", "--json").stdout)
    assert shown["mechanism"] == "UserPassword"


def test_report_output_path_errors(cli: Invoke, tmp_path: Path) -> None:
    for output in (tmp_path / "missing" / "r.csv", Path(TOO_LONG_NAME)):
        for fmt in ("csv", "json"):
            result = cli(
                "report", "schedule-list", "--format", fmt, "--output", str(output)
            )

            assert_invalid(result, "output: cannot write")


def test_query_file_not_utf8(cli: Invoke, tmp_path: Path) -> None:
    query = tmp_path / "query.sql"
    query.write_bytes(b"SELECT '\xe9'")

    result = cli(
        "job",
        "create",
        "Daily",
        "--cron",
        "0 7 * * *",
        "--data-source",
        "sales",
        "--query-file",
        str(query),
        "--to",
        "ops@example.com",
    )

    assert_invalid(result, "query_file: ")


def test_non_utf8_stdin_in_real_process(cli_env: dict[str, str]) -> None:
    # A real process decodes standard input with surrogateescape, unlike
    # CliRunner's stream, so the secret arrives as lone surrogates there.
    postroom = str(Path(sys.executable).parent / "postroom")
    env = {**os.environ, **cli_env, "PYTHONIOENCODING": "", "LC_ALL": "C.UTF-8"}

    done = subprocess.run(
        [postroom, *CREATE_Q, "--login", "u", "--password-stdin"],
        input=LATIN1_SECRET.encode("latin-1") + b"\n",
        env=env,
        capture_output=True,
        timeout=60,
    )

    assert done.returncode == 2, done.stderr.decode()
    errors = done.stderr.decode()
    assert errors.startswith("error: password: standard input is not valid UTF-8")
    assert "Traceback" not in errors
    assert b"Pa" not in done.stdout + done.stderr


@pytest.fixture
def any_cli(any_runtime: Runtime) -> Invoke:
    settings = any_runtime.settings
    return make_invoke(
        {
            "POSTROOM_DATA_DIR": str(settings.data_dir),
            "POSTROOM_DATABASE_URL": settings.database_url or "",
            "POSTROOM_SECRET_KEY": settings.secret_key or "",
        }
    )


@pytest.mark.parametrize(
    ("args", "prefix"),
    [
        (("message", "show", "9999999999"), "id: must be a whole number"),
        (("event", "show", "2147483648"), "id: must be a whole number"),
        (("token", "create", "t" * 201), "name: must be at most 200"),
        (
            (
                "profile",
                "create",
                "C",
                "--host",
                "127.0.0.1",
                "--from",
                "D" * 600 + " <a@example.com>",
            ),
            "from_address: must be at most 500",
        ),
    ],
)
def test_bad_input_on_both_databases(
    any_cli: Invoke, args: tuple[str, ...], prefix: str
) -> None:
    assert_invalid(any_cli(*args), prefix)


def test_database_rejection_is_error_not_traceback(
    any_cli: Invoke, any_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand-in for a validation gap: the length check lets everything pass,
    # so PostgreSQL itself rejects the value. SQLite stores any length.
    monkeypatch.setattr(
        "postroom.domain.profiles.check_length", lambda value, *_args: value
    )
    client = "Sensitive-client-" + "c" * 300

    result = any_cli(*CREATE_Q, "--client", client)

    if any_runtime.engine.dialect.name == "sqlite":
        assert result.exit_code == 0, result.output
        return
    assert_invalid(result, "database: rejected a value (value too long")
    assert "nothing was stored" in result.stderr
    assert client not in result.output
