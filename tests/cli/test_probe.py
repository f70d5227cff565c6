"""`postroom probe`: output, JSON, login test and --apply."""

from __future__ import annotations

import json
from collections.abc import Callable

from postroom.devserver.sink import SinkServer
from tests.cli.conftest import Invoke
from tests.peers.blackhole import closed_port
from tests.peers.certs import Certificates
from tests.peers.scripted import ScriptedServer

PASSWORD = "Cli-Probe-Secret-5"


def test_probe_prints_ports_and_recommendation(
    cli: Invoke, start_sink: Callable[..., SinkServer], certificates: Certificates
) -> None:
    server = start_sink("starttls", users={"alice": PASSWORD})
    refused = closed_port()

    result = cli(
        "probe",
        "localhost",
        "--port",
        str(server.port),
        "--port",
        str(refused),
        "--timeout",
        "2",
        "--ca-bundle",
        str(certificates.ca_file),
    )

    assert result.exit_code == 0, result.output
    assert f"port {refused}: not usable: connection refused" in result.stdout
    assert "STARTTLS offered" in result.stdout
    assert "(trusted)" in result.stdout
    assert (
        f"recommended: port {server.port}, security starttls, auth mechanism "
        "UserPassword" in result.stdout
    )


def test_probe_apply_updates_profile(
    cli: Invoke, start_sink: Callable[..., SinkServer], certificates: Certificates
) -> None:
    server = start_sink("tls", users={"alice": PASSWORD})
    created = cli(
        "profile",
        "create",
        "Orders",
        "--host",
        "old.example.com",
        "--port",
        "25",
        "--security",
        "none",
        "--from",
        "orders@example.com",
    )
    assert created.exit_code == 0, created.output

    result = cli(
        "probe",
        "localhost",
        "--port",
        str(server.port),
        "--timeout",
        "2",
        "--ca-bundle",
        str(certificates.ca_file),
        "--login",
        "alice",
        "--password-stdin",
        "--apply",
        "Orders",
        "--json",
        stdin=PASSWORD + "\n",
    )

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["applied_to"] == "Orders"
    assert shown["login"]["ok"] is True
    assert PASSWORD not in result.output
    profile = json.loads(cli("profile", "show", "Orders", "--json").stdout)
    assert profile["host"] == "localhost"
    assert profile["port"] == server.port
    assert profile["security"] == "tls"
    assert profile["mechanism"] == "UserPassword"
    assert profile["ca_bundle"] == str(certificates.ca_file)
    assert profile["has_password"] is False


def test_probe_nothing_usable_keeps_profile(cli: Invoke) -> None:
    cli(
        "profile",
        "create",
        "Orders",
        "--host",
        "old.example.com",
        "--from",
        "orders@example.com",
    )
    refused = closed_port()

    result = cli("probe", "127.0.0.1", "--port", str(refused), "--apply", "Orders")

    assert result.exit_code == 1
    assert "profile 'Orders' was not changed" in result.stderr
    profile = json.loads(cli("profile", "show", "Orders", "--json").stdout)
    assert profile["host"] == "old.example.com"


def test_probe_unknown_profile_fails_first(cli: Invoke) -> None:
    result = cli("probe", "127.0.0.1", "--port", "1", "--apply", "Nobody")

    assert result.exit_code == 1
    assert "no email profile named 'Nobody'" in result.stderr


def test_probe_invalid_port(cli: Invoke) -> None:
    result = cli("probe", "127.0.0.1", "--port", "70000")

    assert result.exit_code == 2
    assert "ports: must be between 1 and 65535, got 70000" in result.stderr


def test_probe_apply_plaintext_needs_flag(
    cli: Invoke, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted(extensions=["AUTH PLAIN LOGIN"], users={"alice": PASSWORD})
    cli(
        "profile",
        "create",
        "Orders",
        "--host",
        "old.example.com",
        "--security",
        "starttls",
        "--from",
        "orders@example.com",
    )
    probe_args = ["probe", "127.0.0.1", "--port", str(server.port)]
    login_args = ["--login", "alice", "--password-stdin", "--apply", "Orders"]

    refused = cli(*probe_args, *login_args, stdin=PASSWORD + "\n")

    assert refused.exit_code == 1
    assert "login: NOT TESTED" in refused.stdout
    assert "--allow-plaintext" in refused.stderr
    assert "profile 'Orders' was not changed" in refused.stderr
    profile = json.loads(cli("profile", "show", "Orders", "--json").stdout)
    assert profile["security"] == "starttls"
    assert not any(command.upper().startswith("AUTH") for command in server.commands)

    allowed = cli(*probe_args, *login_args, "--allow-plaintext", stdin=PASSWORD + "\n")

    assert allowed.exit_code == 0, allowed.output
    assert "login: accepted" in allowed.stdout
    assert "applied to profile Orders" in allowed.stdout
    profile = json.loads(cli("profile", "show", "Orders", "--json").stdout)
    assert profile["security"] == "none"
    assert profile["port"] == server.port
