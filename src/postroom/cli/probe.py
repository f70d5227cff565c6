"""`postroom probe HOST`: discover what a server offers and recommend settings."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from postroom.cli.common import (
    EXIT_FAILED,
    errors_as_exits,
    fail,
    print_json,
    read_secret_from_stdin,
    runtime,
)
from postroom.diagnosis.probe import (
    ProbeResult,
    apply_error,
    apply_recommendation,
    check_probe_request,
    run_probe,
)
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.models import AuthMechanism


def _port_line(port: dict[str, Any]) -> str:
    if not port["usable"]:
        return f"  port {port['port']}: not usable: {port['error']}"
    parts = [f"  port {port['port']}: {port['greeting']}"]
    tls = port["tls"]
    if port["implicit_tls"]:
        parts.append("implicit TLS")
    elif port["starttls_offered"]:
        parts.append("STARTTLS offered" + ("" if tls else " but failed"))
    else:
        parts.append("no TLS")
    before = " ".join(port["auth_before_tls"]) or "none"
    after = " ".join(port["auth_after_tls"]) or "none"
    parts.append(f"AUTH before TLS: {before}")
    if tls:
        parts.append(f"AUTH after TLS: {after}")
    if port["size_limit"]:
        parts.append(f"SIZE {port['size_limit']}")
    return "; ".join(parts)


def print_probe(result: ProbeResult) -> None:
    data = result.as_dict()
    typer.echo(f"probe of {data['host']} ({', '.join(data['addresses']) or '-'})")
    if data["error"]:
        typer.echo(f"  {data['error']}")
    for port in data["ports"]:
        typer.echo(_port_line(port))
        tls = port["tls"]
        if port["usable"] and tls and tls["certificate"]:
            certificate = tls["certificate"]
            trust = (
                "trusted" if tls["trusted"] else f"NOT trusted: {tls['verify_error']}"
            )
            typer.echo(
                f"    certificate: {certificate['subject']}, issued by "
                f"{certificate['issuer']}, expires {certificate['not_after']} ({trust})"
            )
        if (
            port["usable"]
            and port["extensions_after_tls" if tls else "extensions_before_tls"]
        ):
            keywords = port["extensions_after_tls" if tls else "extensions_before_tls"]
            typer.echo(f"    extensions: {', '.join(keywords)}")
    recommendation = data["recommendation"]
    if recommendation is None:
        typer.echo("no port answered SMTP: nothing to recommend")
    else:
        typer.echo(
            f"recommended: port {recommendation['port']}, security "
            f"{recommendation['security']}, auth mechanism "
            f"{recommendation['mechanism'] or 'none (no AUTH offered)'}"
        )
        for reason in recommendation["reasons"]:
            typer.echo(f"  because {reason}")
        for warning in recommendation["warnings"]:
            typer.echo(f"  warning: {warning}")
    login = data["login"]
    if login is not None:
        if not login["tested"]:
            diagnosis = login["diagnosis"] or {}
            typer.echo(f"login: NOT TESTED: {diagnosis.get('cause')}")
            if diagnosis.get("fix"):
                typer.echo(f"  fix: {diagnosis['fix']}")
        elif login["ok"]:
            typer.echo(f"login: accepted ({login['mechanism']})")
        else:
            diagnosis = login["diagnosis"] or {}
            typer.echo(
                f"login: FAILED ({diagnosis.get('id')}): {diagnosis.get('cause')}"
            )
            if diagnosis.get("fix"):
                typer.echo(f"  fix: {diagnosis['fix']}")
    if data["applied_to"]:
        typer.echo(f"applied to profile {data['applied_to']}")


def probe(
    host: Annotated[str, typer.Argument(help="The SMTP server to probe.")],
    ports: Annotated[
        list[int] | None,
        typer.Option(
            "--port",
            help="Port to probe; repeat for several (default 25, 465, 587 and 2525).",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds allowed for each port.")
    ] = 10.0,
    total_timeout: Annotated[
        float,
        typer.Option("--total-timeout", help="Seconds allowed for the whole probe."),
    ] = 30.0,
    ca_bundle: Annotated[
        str | None,
        typer.Option(
            "--ca-bundle", help="PEM file of a CA to trust besides the system store."
        ),
    ] = None,
    ehlo_name: Annotated[
        str | None, typer.Option("--ehlo-name", help="Name sent in EHLO.")
    ] = None,
    login: Annotated[
        str | None,
        typer.Option(
            "--login",
            help="Test this login on the recommended port (needs --password-stdin).",
        ),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password for --login from standard input.",
        ),
    ] = False,
    auth: Annotated[
        AuthMechanism | None,
        typer.Option(
            "--auth", case_sensitive=False, help="Mechanism for the login test."
        ),
    ] = None,
    apply: Annotated[
        str | None,
        typer.Option(
            "--apply",
            help="Write the recommended host, port, security and mechanism to this profile.",
        ),
    ] = None,
    allow_plaintext: Annotated[
        bool,
        typer.Option(
            "--allow-plaintext",
            help="Let the login test and --apply use a port without TLS (security "
            "none), which sends the password unencrypted.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of text.")
    ] = False,
) -> None:
    """Probe a server's ports and recommend profile settings.

    Sends no credentials unless --login is given, and never sends a message.
    A login is tested, and --apply writes settings, over a port without TLS
    only with --allow-plaintext. Exit status 0 when a port works (and the
    login test, if any, passed), 1 otherwise.
    """
    password = (
        read_secret_from_stdin("Password", "password", "--password-stdin")
        if password_stdin
        else None
    )
    with errors_as_exits():
        request = check_probe_request(
            host,
            ports,
            port_timeout=timeout,
            total_timeout=total_timeout,
            ca_bundle=ca_bundle,
            ehlo_name=ehlo_name,
            login=login,
            password=password,
            mechanism=auth.value if auth else None,
            allow_plaintext=allow_plaintext,
        )
    not_applied_reason: str | None = None
    if apply is None:
        result = asyncio.run(run_probe(request))
    else:
        with runtime() as opened:
            # Fail on an unknown profile before spending time on the probe.
            with transaction(opened.sessions) as session:
                profiles.get_profile(session, apply)
            result = asyncio.run(run_probe(request))
            not_applied_reason = apply_error(result, apply, allow_plaintext)
            if not_applied_reason is None and result.recommendation is not None:
                with transaction(opened.sessions) as session:
                    apply_recommendation(
                        session,
                        opened.secrets,
                        apply,
                        result.recommendation,
                        ca_bundle=ca_bundle,
                    )
                result.applied_to = apply
    if as_json:
        print_json(result.as_dict())
    else:
        print_probe(result)
    if not_applied_reason is not None:
        fail(not_applied_reason)
    if result.recommendation is None:
        raise typer.Exit(EXIT_FAILED)
    if result.login is not None and not result.login.ok:
        raise typer.Exit(EXIT_FAILED)
