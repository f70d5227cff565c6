"""CLI commands for OAuth, Kerberos and client certificates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from typer.testing import CliRunner, Result

from postroom.cli.main import app
from tests.peers.oauth_server import OAuthServer

CLIENT_ID = "cli-app"
CLIENT_SECRET = "cli-client-Secret-77"


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.runner = CliRunner()
        self.env = {
            "POSTROOM_DATA_DIR": str(tmp_path / "data"),
            "POSTROOM_DATABASE_URL": "",
            "POSTROOM_SECRET_KEY": "",
        }

    def __call__(self, *args: str, stdin: str | None = None) -> Result:
        return self.runner.invoke(app, list(args), env=self.env, input=stdin)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    invoke = Cli(tmp_path)
    created = invoke(
        "profile",
        "create",
        "Orders",
        "--host",
        "127.0.0.1",
        "--port",
        "2525",
        "--security",
        "starttls",
        "--from",
        "Orders <orders@example.com>",
    )
    assert created.exit_code == 0, created.output
    return invoke


@pytest.fixture
def provider() -> Iterator[OAuthServer]:
    server = OAuthServer(clients={CLIENT_ID: CLIENT_SECRET}).start()
    yield server
    server.stop()


def configure(cli: Cli, provider: OAuthServer) -> Result:
    return cli(
        "profile",
        "oauth",
        "configure",
        "Orders",
        "--provider",
        "google",
        "--client-id",
        CLIENT_ID,
        "--client-secret-stdin",
        "--token-endpoint",
        provider.token_endpoint,
        "--authorization-endpoint",
        provider.authorization_endpoint,
        "--login",
        "orders@example.com",
        "--json",
        stdin=CLIENT_SECRET + "\n",
    )


def test_oauth_configure_and_paste_refresh_token(
    cli: Cli, provider: OAuthServer
) -> None:
    configured = configure(cli, provider)
    assert configured.exit_code == 0, configured.output
    shown = json.loads(configured.output)
    assert shown["client_id"] == CLIENT_ID
    assert shown["scope"] == "https://mail.google.com/"
    assert shown["status"]["has_client_secret"] is True
    assert CLIENT_SECRET not in configured.output

    refresh_token = provider.issue_refresh_token(
        CLIENT_ID, scope="https://mail.google.com/"
    )
    pasted = cli(
        "profile", "oauth", "set-refresh-token", "Orders", stdin=refresh_token + "\n"
    )
    assert pasted.exit_code == 0, pasted.output
    assert refresh_token not in pasted.output

    refreshed = cli("profile", "oauth", "refresh", "Orders")
    assert refreshed.exit_code == 0, refreshed.output
    assert refreshed.output.startswith("OK: new access token valid until")
    assert provider.token_requests[-1]["refresh_token"] == refresh_token
    for token in provider.access_tokens:
        assert token not in refreshed.output


def test_oauth_refresh_failure_exits_1(cli: Cli, provider: OAuthServer) -> None:
    assert configure(cli, provider).exit_code == 0
    refresh_token = provider.issue_refresh_token(CLIENT_ID)
    cli("profile", "oauth", "set-refresh-token", "Orders", stdin=refresh_token + "\n")
    provider.revoke(refresh_token)

    refreshed = cli("profile", "oauth", "refresh", "Orders")

    assert refreshed.exit_code == 1
    assert "invalid_grant" in refreshed.output
    assert "postroom profile oauth connect Orders" in refreshed.output
    shown = cli("profile", "oauth", "show", "Orders")
    assert "warning: the last OAuth token refresh failed (invalid_grant" in shown.output


def test_set_refresh_token_needs_stdin(cli: Cli, provider: OAuthServer) -> None:
    assert configure(cli, provider).exit_code == 0

    result = cli("profile", "oauth", "set-refresh-token", "Orders", stdin="\n")

    assert result.exit_code == 2
    assert "standard input was empty" in result.output


def test_oauth_connect_prints_start_page(cli: Cli, provider: OAuthServer) -> None:
    assert configure(cli, provider).exit_code == 0

    result = cli("profile", "oauth", "connect", "Orders", "--json")

    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["start_url"].startswith("http://127.0.0.1:8400/oauth/start/")
    assert answer["redirect_uri"] == "http://127.0.0.1:8400/oauth/callback"


def test_kerberos_command(cli: Cli, tmp_path: Path) -> None:
    keytab = tmp_path / "relay.keytab"
    keytab.write_bytes(b"\x05\x02")

    result = cli(
        "profile",
        "kerberos",
        "Orders",
        "--service-principal",
        "smtp/mail.example.com@EXAMPLE.COM",
        "--keytab",
        str(keytab),
        "--json",
    )

    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["mechanism"] == "Kerberos"
    assert shown["kerberos_service_principal"] == "smtp/mail.example.com@EXAMPLE.COM"
    assert shown["kerberos_keytab"] == str(keytab)


@pytest.mark.parametrize(
    ("args", "field_name"),
    [
        (["--service-principal", "not a principal"], "kerberos_service_principal"),
        (["--keytab", "/nonexistent/relay.keytab"], "kerberos_keytab"),
        (["--config", "/nonexistent/krb5.conf"], "kerberos_config"),
    ],
)
def test_kerberos_command_refuses_bad_input(
    cli: Cli, args: list[str], field_name: str
) -> None:
    result = cli("profile", "kerberos", "Orders", *args)

    assert result.exit_code == 2
    assert field_name in result.output


def test_client_certificate_command(cli: Cli, tmp_path: Path) -> None:
    leaf = trustme.CA().issue_cert("sender.example")
    certificate = tmp_path / "client.pem"
    key = tmp_path / "client.key"
    leaf.cert_chain_pems[0].write_to_path(str(certificate))
    leaf.private_key_pem.write_to_path(str(key))

    stored = cli(
        "profile",
        "client-certificate",
        "Orders",
        "--certificate",
        str(certificate),
        "--key",
        str(key),
        "--json",
    )
    assert stored.exit_code == 0, stored.output
    assert json.loads(stored.output)["has_client_certificate"] is True
    assert "PRIVATE KEY" not in stored.output

    cleared = cli("profile", "client-certificate", "Orders", "--clear", "--json")
    assert json.loads(cleared.output)["has_client_certificate"] is False
