"""`postroom diagnose`: pasted replies and errors, text and JSON output."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from postroom.cli.main import app


def test_diagnose_names_entry_and_fix() -> None:
    result = CliRunner().invoke(
        app, ["diagnose", "530 5.7.0 Must issue a STARTTLS command first"]
    )

    assert result.exit_code == 0, result.output
    assert (
        "diagnosis: starttls-required (permanent; setting: security)" in result.stdout
    )
    assert "fix:   Set security to STARTTLS" in result.stdout


def test_diagnose_json_reads_stdin() -> None:
    pasted = (
        "The message could not be sent to the SMTP server. The transport error "
        "code was 0x80040217. The server response was not available\n"
    )

    result = CliRunner().invoke(app, ["diagnose", "-", "--json"], input=pasted)

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["id"] == "windows-cdo-logon-failure"
    assert shown["matched"] is True
    assert shown["setting"] == "password"
    assert shown["step"] is None


def test_diagnose_step_option_sharpens_advice() -> None:
    result = CliRunner().invoke(
        app,
        ["diagnose", "554 5.7.1 Access denied", "--step", "greeting", "--json"],
    )

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["id"] == "greeting-refused"
    assert shown["step"] == "greeting"


def test_diagnose_unknown_text_exits_1() -> None:
    result = CliRunner().invoke(app, ["diagnose", "printer error 42"])

    assert result.exit_code == 1
    assert "diagnosis: unknown" in result.stdout


def test_diagnose_empty_text_names_field() -> None:
    result = CliRunner().invoke(app, ["diagnose", "  "])

    assert result.exit_code == 2
    assert "text: is required" in result.stderr
