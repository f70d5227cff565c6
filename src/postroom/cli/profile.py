"""`postroom profile ...`: manage email profiles and send test emails."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from postroom.cli.common import (
    EXIT_FAILED,
    fail,
    print_fields,
    print_json,
    print_table,
    read_secret_from_stdin,
    runtime,
)
from postroom.diagnosis.testmail import TestEmailResult, send_test_email
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.models import AuthMechanism, Security
from postroom.domain.presets import find_preset
from postroom.domain.validation import check_address, parse_mailbox
from postroom.errors import InvalidInputError
from postroom.oauth.tokens import profile_connection_settings

app = typer.Typer(
    help="Create, change, list and test email profiles.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Host = Annotated[str | None, typer.Option("--host", help="Outbound SMTP server name.")]
Port = Annotated[
    int | None, typer.Option("--port", help="Outbound port (default 587).")
]
SecurityOption = Annotated[
    Security | None,
    typer.Option(
        "--security",
        case_sensitive=False,
        help="none (plain text), starttls (upgrade, usually port 587) or tls "
        "(implicit TLS, usually port 465).",
    ),
]
Auth = Annotated[
    AuthMechanism | None,
    typer.Option(
        "--auth",
        case_sensitive=False,
        help="Auth mechanism; used only when a login is set.",
    ),
]
Login = Annotated[
    str | None, typer.Option("--login", help="Login (user name) for AUTH.")
]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from standard input (one line), or prompt twice "
        "on a terminal.",
    ),
]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from", help="From address, for example 'Orders <orders@example.com>'."
    ),
]
Client = Annotated[
    str | None, typer.Option("--client", help="Client the profile belongs to.")
]
Active = Annotated[
    bool | None,
    typer.Option(
        "--active/--inactive", help="Whether the profile sends (default active)."
    ),
]
InboundHost = Annotated[
    str | None, typer.Option("--inbound-host", help="POP3/IMAP server for replies.")
]
InboundPort = Annotated[
    int | None, typer.Option("--inbound-port", help="POP3/IMAP port.")
]
EhloName = Annotated[
    str | None,
    typer.Option(
        "--ehlo-name", help="Name sent in EHLO (default: this machine's FQDN)."
    ),
]
CaBundle = Annotated[
    str | None,
    typer.Option(
        "--ca-bundle", help="PEM file of the CA that signed the server's certificate."
    ),
]
ConnectTimeout = Annotated[
    float | None,
    typer.Option("--connect-timeout", help="Seconds to connect and get the greeting."),
]
CommandTimeout = Annotated[
    float | None,
    typer.Option("--command-timeout", help="Seconds to wait for each reply."),
]
PresetOption = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help="Provider preset that sets host, port, security and auth, for example "
        "office365 or ses-eu-west-1 (see `postroom presets`); options given "
        "explicitly override it.",
    ),
]
MaxConnections = Annotated[
    int | None,
    typer.Option(
        "--max-connections",
        help="Connections open at once to the server, across all workers (default 4).",
    ),
]
PoolIdleTimeout = Annotated[
    float | None,
    typer.Option(
        "--pool-idle-timeout",
        help="Seconds an unused connection stays open for the next message "
        "(default 60; 0 closes it at once).",
    ),
]
PerSecond = Annotated[
    int | None,
    typer.Option(
        "--max-messages-per-second", help="Messages per second; 0 for no limit."
    ),
]
PerMinute = Annotated[
    int | None,
    typer.Option(
        "--max-messages-per-minute", help="Messages per minute; 0 for no limit."
    ),
]
PerDay = Annotated[
    int | None,
    typer.Option("--max-messages-per-day", help="Messages per day; 0 for no limit."),
]
MaxRecipients = Annotated[
    int | None,
    typer.Option(
        "--max-recipients-per-message",
        help="Envelope recipients per SMTP transaction; a message with more is "
        "sent as several. 0 for no limit.",
    ),
]


def _input(
    *,
    name: str | None = None,
    host: str | None,
    port: int | None,
    security: Security | None,
    auth: AuthMechanism | None,
    login: str | None,
    password_stdin: bool,
    from_address: str | None,
    client: str | None,
    active: bool | None,
    inbound_host: str | None,
    inbound_port: int | None,
    ehlo_name: str | None,
    ca_bundle: str | None,
    connect_timeout: float | None,
    command_timeout: float | None,
    limits: dict[str, Any],
    clear_password: bool = False,
    preset: str | None = None,
) -> profiles.ProfileInput:
    values: dict[str, Any] = {
        "name": name,
        "host": host,
        "port": port,
        "security": security,
        "mechanism": auth,
        "login": login,
        "from_address": from_address,
        "client": client,
        "is_active": active,
        "inbound_host": inbound_host,
        "inbound_port": inbound_port,
        "ehlo_name": ehlo_name,
        "ca_bundle": ca_bundle,
        "connect_timeout": connect_timeout,
        "command_timeout": command_timeout,
        "preset": preset,
        **limits,
    }
    given = {key: value for key, value in values.items() if value is not None}
    if password_stdin:
        password = read_secret_from_stdin("Password", "password", "--password-stdin")
        given["password"] = password
        given["confirm_password"] = password
    if clear_password:
        given["clear_password"] = True
    return profiles.ProfileInput(**given)


def _show(view: profiles.ProfileView, as_json: bool, preset: str | None = None) -> None:
    data = view.model_dump(mode="json")
    if as_json:
        print_json(data)
    else:
        print_fields(data)
    if preset:
        # The provider's requirements are not stored, so show them once here.
        resolved = find_preset(preset)
        typer.echo(f"note ({resolved.name}): {resolved.note}", err=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Unique profile name.")],
    host: Host = None,
    port: Port = None,
    security: SecurityOption = None,
    auth: Auth = None,
    login: Login = None,
    password_stdin: PasswordStdin = False,
    from_address: FromOption = None,
    client: Client = None,
    active: Active = None,
    inbound_host: InboundHost = None,
    inbound_port: InboundPort = None,
    ehlo_name: EhloName = None,
    ca_bundle: CaBundle = None,
    connect_timeout: ConnectTimeout = None,
    command_timeout: CommandTimeout = None,
    preset: PresetOption = None,
    max_connections: MaxConnections = None,
    pool_idle_timeout: PoolIdleTimeout = None,
    max_messages_per_second: PerSecond = None,
    max_messages_per_minute: PerMinute = None,
    max_messages_per_day: PerDay = None,
    max_recipients_per_message: MaxRecipients = None,
    as_json: JsonOption = False,
) -> None:
    """Create an email profile, optionally from a provider preset."""
    with runtime() as opened:
        data = _input(
            name=name,
            host=host,
            port=port,
            security=security,
            auth=auth,
            login=login,
            password_stdin=password_stdin,
            from_address=from_address,
            client=client,
            active=active,
            inbound_host=inbound_host,
            inbound_port=inbound_port,
            ehlo_name=ehlo_name,
            ca_bundle=ca_bundle,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            preset=preset,
            limits={
                "max_connections": max_connections,
                "pool_idle_timeout": pool_idle_timeout,
                "max_messages_per_second": max_messages_per_second,
                "max_messages_per_minute": max_messages_per_minute,
                "max_messages_per_day": max_messages_per_day,
                "max_recipients_per_message": max_recipients_per_message,
            },
        )
        with transaction(opened.sessions) as session:
            view = profiles.ProfileView.of(
                profiles.create_profile(session, opened.secrets, data)
            )
        _show(view, as_json, preset)


@app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="Profile to change.")],
    new_name: Annotated[
        str | None, typer.Option("--name", help="Rename the profile.")
    ] = None,
    host: Host = None,
    port: Port = None,
    security: SecurityOption = None,
    auth: Auth = None,
    login: Login = None,
    password_stdin: PasswordStdin = False,
    clear_password: Annotated[
        bool, typer.Option("--clear-password", help="Remove the stored password.")
    ] = False,
    from_address: FromOption = None,
    client: Client = None,
    active: Active = None,
    inbound_host: InboundHost = None,
    inbound_port: InboundPort = None,
    ehlo_name: EhloName = None,
    ca_bundle: CaBundle = None,
    connect_timeout: ConnectTimeout = None,
    command_timeout: CommandTimeout = None,
    preset: PresetOption = None,
    max_connections: MaxConnections = None,
    pool_idle_timeout: PoolIdleTimeout = None,
    max_messages_per_second: PerSecond = None,
    max_messages_per_minute: PerMinute = None,
    max_messages_per_day: PerDay = None,
    max_recipients_per_message: MaxRecipients = None,
    as_json: JsonOption = False,
) -> None:
    """Change the given fields of a profile; the stored password stays unless replaced."""
    with runtime() as opened:
        data = _input(
            name=new_name,
            host=host,
            port=port,
            security=security,
            auth=auth,
            login=login,
            password_stdin=password_stdin,
            from_address=from_address,
            client=client,
            active=active,
            inbound_host=inbound_host,
            inbound_port=inbound_port,
            ehlo_name=ehlo_name,
            ca_bundle=ca_bundle,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            limits={
                "max_connections": max_connections,
                "pool_idle_timeout": pool_idle_timeout,
                "max_messages_per_second": max_messages_per_second,
                "max_messages_per_minute": max_messages_per_minute,
                "max_messages_per_day": max_messages_per_day,
                "max_recipients_per_message": max_recipients_per_message,
            },
            clear_password=clear_password,
            preset=preset,
        )
        with transaction(opened.sessions) as session:
            profile = profiles.update_profile(session, opened.secrets, name, data)
            view = profiles.ProfileView.of(profile)
        _show(view, as_json, preset)


@app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List every profile."""
    with runtime() as opened, transaction(opened.sessions) as session:
        views = [
            profiles.ProfileView.of(profile).model_dump(mode="json")
            for profile in profiles.list_profiles(session)
        ]
    if as_json:
        print_json(views)
        return
    print_table(
        views,
        [
            "name",
            "client",
            "host",
            "port",
            "security",
            "mechanism",
            "login",
            "from_address",
            "is_active",
        ],
    )


@app.command("show")
def show(name: str, as_json: JsonOption = False) -> None:
    """Show one profile (the password is never shown)."""
    with runtime() as opened, transaction(opened.sessions) as session:
        view = profiles.ProfileView.of(profiles.get_profile(session, name))
    _show(view, as_json)


@app.command("delete")
def delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm the deletion.")] = False,
) -> None:
    """Delete a profile; system profiles cannot be deleted."""
    if not yes:
        fail(f"deleting profile {name!r} needs --yes to confirm", 2)
    with runtime() as opened, transaction(opened.sessions) as session:
        profiles.delete_profile(session, name)
    typer.echo(f"deleted profile {name}")


@app.command("release")
def release(name: str) -> None:
    """Queue the profile's held messages again, once the cause is fixed."""
    with runtime() as opened, transaction(opened.sessions) as session:
        released = profiles.release_profile(session, name)
    typer.echo(f"released {released} held messages of profile {name}")


def print_test_result(result: TestEmailResult) -> None:
    if result.ok:
        typer.echo(f"OK: the server accepted the test email to {result.recipient}")
        typer.echo(f"reply: {result.reply_code} {result.reply_text}")
    else:
        typer.echo(f"FAILED at {result.step}: ", nl=False)
        if result.reply_code is not None:
            typer.echo(f"{result.reply_code} {result.reply_text}")
        else:
            typer.echo(result.reply_text or "")
        typer.echo(f"cause: {result.cause}")
        typer.echo(f"fix:   {result.fix}")
        typer.echo(
            f"diagnosis: {result.diagnosis} ({'transient' if result.transient else 'permanent'})"
        )
    timings = ", ".join(f"{step} {ms:.0f} ms" for step, ms in result.timings.items())
    typer.echo(f"timings: {timings}")
    typer.echo("transcript:")
    for line in result.transcript:
        typer.echo(f"  {line}")


@app.command("test")
def test(
    name: str,
    to: Annotated[
        str, typer.Option("--to", help="Address that receives the test email.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Send a test email; exit status 0 only when the server accepted it."""
    with runtime() as opened:
        recipient = check_address(parse_mailbox(to, "to").addr_spec, "to")
        with transaction(opened.sessions) as session:
            profile = profiles.get_profile(session, name)
            if not profile.from_address:
                raise InvalidInputError(
                    f"profile {name!r} has no From address; set it with "
                    f"`postroom profile update {name} --from ADDRESS`",
                    field="from_address",
                )
            settings = profile_connection_settings(
                profile, opened.sessions, opened.secrets
            )
            sender = profile.from_address
        result = asyncio.run(send_test_email(name, settings, sender, recipient))
    if as_json:
        print_json(result.as_dict())
    else:
        print_test_result(result)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)
