"""CLI commands: output, JSON, exit statuses and error messages."""

from __future__ import annotations

import json
from collections.abc import Callable

from typer.testing import Result

from postroom.devserver.sink import SinkServer
from tests.cli.conftest import Invoke

PASSWORD = "cli-Secret-42"


def create_orders(
    cli: Invoke, port: int, *extra: str, stdin: str | None = None
) -> Result:
    return cli(
        "profile",
        "create",
        "Orders",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--security",
        "none",
        "--from",
        "Orders <orders@example.com>",
        *extra,
        stdin=stdin,
    )


def test_profile_create_reads_password_from_stdin(cli: Invoke) -> None:
    result = create_orders(
        cli,
        2525,
        "--login",
        "alice",
        "--password-stdin",
        "--json",
        stdin=PASSWORD + "\n",
    )

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["has_password"] is True
    assert shown["login"] == "alice"
    assert PASSWORD not in result.output


def test_invalid_option_names_field(cli: Invoke) -> None:
    result = create_orders(cli, 70000)

    assert result.exit_code == 2
    assert "port: must be between 1 and 65535, got 70000" in result.stderr


def test_unknown_security_value(cli: Invoke) -> None:
    result = cli("profile", "create", "X", "--host", "h.example", "--security", "ssl")

    assert result.exit_code == 2
    assert "--security" in result.output


def test_show_missing_profile(cli: Invoke) -> None:
    result = cli("profile", "show", "Nope")

    assert result.exit_code == 1
    assert "no email profile named 'Nope'" in result.stderr


def test_delete_needs_yes(cli: Invoke) -> None:
    create_orders(cli, 2525)

    refused = cli("profile", "delete", "Orders")
    deleted = cli("profile", "delete", "Orders", "--yes")

    assert refused.exit_code == 2
    assert deleted.exit_code == 0
    assert cli("profile", "show", "Orders").exit_code == 1


def test_profile_test_exit_status(
    cli: Invoke, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    create_orders(cli, server.port)

    accepted = cli("profile", "test", "Orders", "--to", "alice@example.com", "--json")
    cli("profile", "update", "Orders", "--port", "1")
    refused = cli("profile", "test", "Orders", "--to", "alice@example.com")

    assert accepted.exit_code == 0
    assert json.loads(accepted.stdout)["ok"] is True
    assert refused.exit_code == 1
    assert "FAILED at connect" in refused.stdout
    assert "fix:" in refused.stdout


def test_send_prints_id_and_message_show(
    cli: Invoke, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    create_orders(cli, server.port)

    sent = cli(
        "send",
        "--profile",
        "Orders",
        "--to",
        "bob@example.com",
        "--subject",
        "Hi",
        "--text",
        "Body",
    )
    drained = cli("worker", "--drain")
    shown = cli("message", "show", sent.stdout.strip(), "--json")

    assert sent.exit_code == 0
    assert sent.stdout.strip().isdigit()
    assert drained.exit_code == 0
    view = json.loads(shown.stdout)
    assert view["status"] == "sent"
    assert view["recipients"][0]["reply_code"] == 250
    assert len(server.handler.messages) == 1


def test_send_to_inactive_profile_reports_hold(cli: Invoke) -> None:
    create_orders(cli, 2525, "--inactive")

    sent = cli(
        "send", "--profile", "Orders", "--to", "bob@example.com", "--text", "Body"
    )

    assert sent.exit_code == 0
    assert "held: email profile 'Orders' is inactive" in sent.stderr
    listed = cli("message", "list", "--status", "held")
    assert "email profile 'Orders' is inactive" in listed.stdout


def test_token_created_once_and_listed(cli: Invoke) -> None:
    created = cli("token", "create", "shop")
    listed = cli("token", "list", "--json")

    token = created.stdout.strip()
    assert token.startswith("pr_")
    assert token not in listed.stdout
    assert json.loads(listed.stdout)[0]["name"] == "shop"


def test_presets_lists_providers(cli: Invoke) -> None:
    result = cli("presets")

    assert result.exit_code == 0, result.output
    assert "office365" in result.stdout
    assert "smtp.office365.com" in result.stdout
    assert "ses-REGION" in result.stdout
    assert "sendgrid: The login is the word apikey" in result.stdout


def test_presets_json(cli: Invoke) -> None:
    result = cli("presets", "--json")

    assert result.exit_code == 0, result.output
    by_name = {row["name"]: row for row in json.loads(result.stdout)}
    assert by_name["gmail"]["host"] == "smtp.gmail.com"
    assert "eu-west-1" in by_name["ses-REGION"]["regions"]


def test_profile_create_from_preset(cli: Invoke) -> None:
    result = cli(
        "profile",
        "create",
        "Orders",
        "--preset",
        "office365",
        "--port",
        "2587",
        "--from",
        "orders@example.com",
        "--json",
    )

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["host"] == "smtp.office365.com"
    assert shown["port"] == 2587
    assert shown["security"] == "starttls"
    assert "note (office365): Log in with the full mailbox address" in result.stderr


def test_profile_create_unknown_preset(cli: Invoke) -> None:
    result = cli("profile", "create", "Orders", "--preset", "ses")

    assert result.exit_code == 2
    assert "preset: preset 'ses' needs a region" in result.stderr


def test_profile_limits_options(cli: Invoke) -> None:
    created = create_orders(
        cli,
        2525,
        "--max-connections",
        "2",
        "--max-messages-per-minute",
        "30",
        "--max-recipients-per-message",
        "100",
        "--json",
    )
    updated = cli(
        "profile", "update", "Orders", "--max-messages-per-minute", "0", "--json"
    )
    invalid = cli("profile", "update", "Orders", "--max-connections", "0")

    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["max_connections"] == 2
    assert json.loads(created.stdout)["max_messages_per_minute"] == 30
    assert json.loads(created.stdout)["max_recipients_per_message"] == 100
    assert json.loads(updated.stdout)["max_messages_per_minute"] is None
    assert invalid.exit_code == 2
    assert "max_connections: must be between 1 and 100" in invalid.output


def test_message_cancel_and_retry(cli: Invoke) -> None:
    create_orders(cli, 2525)
    sent = cli("send", "--profile", "Orders", "--to", "bob@example.com", "--text", "Hi")
    message_pk = sent.stdout.strip()

    cancelled = cli("message", "cancel", message_pk)
    again = cli("message", "cancel", message_pk)
    retried = cli("message", "retry", message_pk, "--json")
    missing = cli("message", "retry", "999")

    assert cancelled.exit_code == 0
    assert cancelled.stdout == f"message {message_pk} is cancelled\n"
    assert again.exit_code == 1
    assert "cannot be cancelled because its status is cancelled" in again.output
    assert retried.exit_code == 0
    assert json.loads(retried.stdout)["status"] == "queued"
    assert missing.exit_code == 1
    assert "no message with id 999" in missing.output
