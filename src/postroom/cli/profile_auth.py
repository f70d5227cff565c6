"""`postroom profile oauth|kerberos|client-certificate`: enterprise and OAuth auth."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from postroom.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    fail,
    print_fields,
    print_json,
    read_secret_from_stdin,
    runtime,
)
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.oauth_providers import OAuthProvider
from postroom.oauth.flow import CALLBACK_PATH, start_flow
from postroom.oauth.status import refresh_now, settings_view
from postroom.runtime import Runtime

oauth_app = typer.Typer(
    help="Connect XOAUTH2 profiles to Microsoft 365, Google or another OAuth provider.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
ProfileName = Annotated[str, typer.Argument(help="Email profile name.")]


def _update(opened: Runtime, name: str, values: dict[str, Any]) -> profiles.ProfileView:
    with transaction(opened.sessions) as session:
        profile = profiles.update_profile(
            session, opened.secrets, name, profiles.ProfileInput(**values)
        )
        return profiles.ProfileView.of(profile)


def _show_oauth(opened: Runtime, name: str, as_json: bool) -> None:
    with transaction(opened.sessions) as session:
        view = settings_view(profiles.get_profile(session, name), opened.secrets)
    data = view.model_dump(mode="json")
    if as_json:
        print_json(data)
        return
    status = data.pop("status")
    warnings = data.pop("warnings")
    print_fields({**data, **status})
    for warning in warnings:
        typer.echo(f"warning: {warning}")


@oauth_app.command("configure")
def configure(
    name: ProfileName,
    provider: Annotated[
        OAuthProvider | None,
        typer.Option(
            "--provider",
            case_sensitive=False,
            help="microsoft or google fill in the endpoints and scope; custom "
            "needs --token-endpoint and --authorization-endpoint.",
        ),
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(
            "--client-id", help="Application (client) id of the app registration."
        ),
    ] = None,
    client_secret_stdin: Annotated[
        bool,
        typer.Option(
            "--client-secret-stdin",
            help="Read the client secret from standard input (one line).",
        ),
    ] = False,
    token_endpoint: Annotated[
        str | None, typer.Option("--token-endpoint", help="Token endpoint URL.")
    ] = None,
    authorization_endpoint: Annotated[
        str | None,
        typer.Option("--authorization-endpoint", help="Authorization endpoint URL."),
    ] = None,
    scope: Annotated[
        str | None, typer.Option("--scope", help="Scopes, separated by spaces.")
    ] = None,
    login: Annotated[
        str | None, typer.Option("--login", help="The mailbox to send as.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Make the profile use XOAUTH2 with this OAuth client."""
    values: dict[str, Any] = {"mechanism": "XOAUTH2"}
    for key, value in (
        ("oauth_provider", provider),
        ("oauth_client_id", client_id),
        ("oauth_token_endpoint", token_endpoint),
        ("oauth_authorization_endpoint", authorization_endpoint),
        ("oauth_scope", scope),
        ("login", login),
    ):
        if value is not None:
            values[key] = value
    if client_secret_stdin:
        values["oauth_client_secret"] = read_secret_from_stdin(
            "Client secret", "oauth_client_secret", "--client-secret-stdin"
        )
    with runtime() as opened:
        _update(opened, name, values)
        _show_oauth(opened, name, as_json)


@oauth_app.command("connect")
def connect(name: ProfileName, as_json: JsonOption = False) -> None:
    """Start the sign-in: prints a Postroom page to open in a browser.

    `postroom serve` must be running and reachable at public_url (default
    http://HTTP_HOST:HTTP_PORT) to receive the provider's redirect.
    """
    with runtime() as opened:
        config = opened.settings
        base = config.public_url or f"http://{config.http_host}:{config.http_port}"
        base = base.rstrip("/")
        with transaction(opened.sessions) as session:
            profile = profiles.get_profile(session, name)
            flow = start_flow(session, opened.secrets, profile, base + CALLBACK_PATH)
    data = {
        "profile": flow.profile,
        "start_url": base + flow.start_path,
        "redirect_uri": flow.redirect_uri,
        "expires_at": flow.expires_at.isoformat(),
    }
    if as_json:
        print_json(data)
        return
    typer.echo(f"Open this page in a browser and sign in:\n  {data['start_url']}")
    typer.echo(
        f"The provider must accept the redirect URI {flow.redirect_uri}; the link "
        f"works until {data['expires_at']}."
    )


@oauth_app.command("set-refresh-token")
def set_refresh_token(name: ProfileName, as_json: JsonOption = False) -> None:
    """Store a refresh token read from standard input (never from an option)."""
    token = read_secret_from_stdin("Refresh token", "oauth_refresh_token").strip()
    if not token:
        fail("no refresh token on standard input", EXIT_INVALID)
    with runtime() as opened:
        _update(opened, name, {"oauth_refresh_token": token})
        _show_oauth(opened, name, as_json)


@oauth_app.command("refresh")
def refresh(name: ProfileName, as_json: JsonOption = False) -> None:
    """Get a new access token now to check the grant; exit 1 if the provider refuses."""
    with runtime() as opened:
        result = asyncio.run(refresh_now(opened.sessions, opened.secrets, name))
    if as_json:
        print_json(result.model_dump(mode="json"))
    elif result.ok:
        expires = result.access_token_expires_at
        typer.echo(
            f"OK: new access token valid until {expires.isoformat() if expires else '?'}"
        )
    else:
        typer.echo(f"FAILED: {result.message}")
        if result.transient:
            typer.echo(
                "fix: the token endpoint is unavailable for now; check "
                "oauth_token_endpoint and that this machine reaches it. Delivery "
                "retries on its own."
            )
        else:
            typer.echo(
                f"fix: reconnect the account with `postroom profile oauth connect {name}`"
            )
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


@oauth_app.command("show")
def show(name: ProfileName, as_json: JsonOption = False) -> None:
    """Show the OAuth client and grant state (no token or secret)."""
    with runtime() as opened:
        _show_oauth(opened, name, as_json)


def kerberos(
    name: ProfileName,
    service_principal: Annotated[
        str | None,
        typer.Option(
            "--service-principal",
            help="The SMTP server's principal when it is not smtp/<host>, for "
            "example smtp/mail.example.com@EXAMPLE.COM; '' removes it.",
        ),
    ] = None,
    keytab: Annotated[
        str | None,
        typer.Option(
            "--keytab", help="Keytab file used instead of the password; '' removes it."
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="krb5.conf to use instead of the system one; '' removes it.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Set the Kerberos (GSSAPI) settings of a profile and switch it to Kerberos."""
    values: dict[str, Any] = {"mechanism": "Kerberos"}
    for key, value in (
        ("kerberos_service_principal", service_principal),
        ("kerberos_keytab", keytab),
        ("kerberos_config", config),
    ):
        if value is not None:
            values[key] = value
    with runtime() as opened:
        view = _update(opened, name, values)
    _print_view(view, as_json)


def client_certificate(
    name: ProfileName,
    certificate: Annotated[
        Path | None,
        typer.Option("--certificate", help="PEM file with the certificate chain."),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="PEM file with the unencrypted private key."),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the stored certificate and key.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Store a TLS client certificate and key (encrypted) for the profile."""
    values: dict[str, Any] = {}
    if clear:
        values["clear_client_certificate"] = True
    if certificate is not None:
        values["client_certificate"] = _read(certificate, "--certificate")
    if key is not None:
        values["client_key"] = _read(key, "--key")
    if not values:
        fail("give --certificate and --key, or --clear", EXIT_INVALID)
    with runtime() as opened:
        view = _update(opened, name, values)
    _print_view(view, as_json)


def _read(path: Path, option: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        fail(f"{option}: cannot read {path}: {exc.strerror}", EXIT_INVALID)
    except UnicodeDecodeError:
        fail(f"{option}: {path} is not a PEM text file", EXIT_INVALID)


def _print_view(view: profiles.ProfileView, as_json: bool) -> None:
    data = view.model_dump(mode="json")
    if as_json:
        print_json(data)
    else:
        print_fields(data)
