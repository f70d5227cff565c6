"""`postroom template ...` and `postroom event send`, with bodies from files."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from postroom.devserver.sink import SinkServer
from tests.cli.conftest import Invoke


@pytest.fixture
def files(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "shipped.html").write_text(
        "<p>Hello {{ customer.name }},</p>\n<p>order {{ order.id }} is on its way.</p>\n"
    )
    (folder / "shipped.txt").write_text(
        "Hello {{ customer.name }},\norder {{ order.id }} is on its way.\n"
    )
    (folder / "sample.json").write_text(
        json.dumps(
            {
                "order": {"id": 42},
                "customer": {"name": "Jürgen", "email": "juergen@example.com"},
            }
        )
    )
    (folder / "cancelled.toml").write_text(
        'name = "cancelled"\n'
        'event_type = "order.cancelled"\n'
        'subject = "Order {{ order.id }} cancelled"\n'
        'text_body = """\nSorry {{ customer.name }}, order {{ order.id }} was cancelled.\n"""\n'
        'to = [{ address = "{{ customer.email }}", name = "{{ customer.name }}" }]\n'
        'profile = "Shop"\n'
    )
    return folder


def create_profile(cli: Invoke, port: int) -> None:
    result = cli(
        "profile",
        "create",
        "Shop",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--security",
        "none",
        "--from",
        "Shop <orders@shop.example>",
    )
    assert result.exit_code == 0, result.output


def create_shipped(cli: Invoke, files: Path, *extra: str) -> Result:
    return cli(
        "template",
        "create",
        "shipped",
        "--event-type",
        "order.shipped",
        "--subject",
        "Order {{ order.id }} shipped",
        "--html-file",
        str(files / "shipped.html"),
        "--text-file",
        str(files / "shipped.txt"),
        "--to",
        "{{ customer.email }}",
        "--bcc",
        "audit@shop.example",
        "--header",
        "X-Order: {{ order.id }}",
        "--profile",
        "Shop",
        "--sample-data-file",
        str(files / "sample.json"),
        *extra,
    )


def test_create_from_files_lists_variables(cli: Invoke, files: Path) -> None:
    create_profile(cli, 2525)

    result = create_shipped(cli, files, "--json")

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["html_body"].startswith("<p>Hello {{ customer.name }},</p>")
    assert shown["headers"] == {"X-Order": "{{ order.id }}"}
    assert shown["variables"] == ["customer.email", "customer.name", "order.id"]


def test_create_from_toml_file(cli: Invoke, files: Path) -> None:
    create_profile(cli, 2525)

    result = cli("template", "create", "--file", str(files / "cancelled.toml"))

    assert result.exit_code == 0, result.output
    assert "cancelled" in cli("template", "list").stdout
    shown = json.loads(cli("template", "show", "cancelled", "--json").stdout)
    assert shown["to"] == [
        {"address": "{{ customer.email }}", "name": "{{ customer.name }}"}
    ]


def test_compile_error_exits_2_with_line(cli: Invoke, files: Path) -> None:
    create_profile(cli, 2525)
    (files / "broken.html").write_text("<p>ok</p>\n{% if order.id %}\n")

    result = create_shipped(cli, files, "--html-file", str(files / "broken.html"))

    assert result.exit_code == 2
    assert "error: html_body: html_body line 2: Unexpected end of template" in (
        result.stderr
    )
    assert cli("template", "list", "--json").stdout.strip() == "[]"


def test_update_show_delete(cli: Invoke, files: Path) -> None:
    create_profile(cli, 2525)
    create_shipped(cli, files)

    updated = cli("template", "update", "shipped", "--inactive", "--client", "acme")
    shown = cli("template", "show", "shipped")
    refused = cli("template", "delete", "shipped")
    deleted = cli("template", "delete", "shipped", "--yes")

    assert updated.exit_code == 0, updated.output
    assert re.search(r"^is_active +False$", shown.stdout, re.M)
    assert re.search(r"^client +acme$", shown.stdout, re.M)
    assert "html_body:\n<p>Hello {{ customer.name }},</p>" in shown.stdout
    assert refused.exit_code == 2
    assert deleted.exit_code == 0
    assert cli("template", "show", "shipped").exit_code == 1


def test_preview_prints_message(cli: Invoke, files: Path) -> None:
    create_profile(cli, 2525)
    create_shipped(cli, files)

    text = cli("template", "preview", "shipped")
    raw = cli(
        "template",
        "preview",
        "shipped",
        "--raw",
        "--data",
        '{"order": {"id": 7}, "customer": {"name": "Ana", "email": "ana@example.com"}}',
    )

    assert text.exit_code == 0, text.output
    assert "profile   Shop" in text.stdout
    assert (
        "envelope  orders@shop.example -> juergen@example.com (to), audit@shop.example (bcc)"
        in text.stdout
    )
    assert "Subject: Order 42 shipped" in text.stdout
    assert "--- text/plain" in text.stdout
    assert "Hello Jürgen,\norder 42 is on its way." in text.stdout
    assert raw.exit_code == 0, raw.output
    assert "Subject: Order 7 shipped\n" in raw.stdout
    assert "X-Order: 7\n" in raw.stdout
    assert cli("message", "list", "--json").stdout.strip() == "[]"


def test_preview_of_file_saves_nothing(cli: Invoke, files: Path) -> None:
    create_profile(cli, 2525)

    result = cli(
        "template",
        "preview",
        "--file",
        str(files / "cancelled.toml"),
        "--data-file",
        str(files / "sample.json"),
    )

    assert result.exit_code == 0, result.output
    assert "Subject: Order 42 cancelled" in result.stdout
    assert cli("template", "list", "--json").stdout.strip() == "[]"


def test_event_send_queues_and_repeats(
    cli: Invoke, files: Path, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    create_profile(cli, server.port)
    create_shipped(cli, files)
    data = str(files / "sample.json")

    first = cli(
        "event", "send", "order.shipped", "--data-file", data, "--idempotency-key", "k1"
    )
    again = cli(
        "event", "send", "order.shipped", "--data-file", data, "--idempotency-key", "k1"
    )
    unmatched = cli("event", "send", "order.returned", "--data", "{}")
    drained = cli("worker", "--drain")

    assert first.exit_code == 0, first.output
    assert first.stdout.strip().isdigit()
    assert again.stdout == first.stdout
    assert "nothing new was queued" in again.stderr
    assert unmatched.exit_code == 0
    assert unmatched.stdout == ""
    assert "no active template matches event type 'order.returned'" in unmatched.stderr
    assert drained.exit_code == 0
    (received,) = server.handler.messages
    assert received.rcpt_tos == ["juergen@example.com", "audit@shop.example"]
    shown = json.loads(cli("event", "show", "1", "--json").stdout)
    assert shown["messages"][0]["status"] == "sent"


def test_event_send_render_failure_exits_2(cli: Invoke, files: Path) -> None:
    create_profile(cli, 2525)
    create_shipped(cli, files)

    result = cli("event", "send", "order.shipped", "--data", '{"order": {"id": 1}}')

    assert result.exit_code == 2
    assert "error: data: template 'shipped'" in result.stderr
    assert "'customer' is undefined" in result.stderr
    assert cli("message", "list", "--json").stdout.strip() == "[]"


def test_event_send_held_says_why(cli: Invoke, files: Path) -> None:
    create_profile(cli, 2525)
    create_shipped(cli, files)
    cli("profile", "update", "Shop", "--inactive")

    result = cli(
        "event", "send", "order.shipped", "--data-file", str(files / "sample.json")
    )

    assert result.exit_code == 0, result.output
    assert "is inactive" in result.stderr
    assert "held: message 1: email profile 'Shop' is inactive" in result.stderr
