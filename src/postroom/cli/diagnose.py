"""`postroom diagnose TEXT`: explain a pasted SMTP reply or error message."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from postroom.cli.common import EXIT_FAILED, errors_as_exits, print_json
from postroom.diagnosis.pasted import TextDiagnosis, diagnose_text
from postroom.domain.models import AuthMechanism, Security
from postroom.smtp.errors import Step


def print_text_diagnosis(result: TextDiagnosis) -> None:
    if result.reply_code is not None:
        typer.echo(f"reply: {result.reply_code} {result.reply_text}")
    elif result.reply_text:
        typer.echo(f"reply: {result.reply_text}")
    typer.echo(f"step:  {result.step or 'not known'}")
    typer.echo(f"cause: {result.cause}")
    typer.echo(f"fix:   {result.fix}")
    kind = "transient" if result.transient else "permanent"
    typer.echo(f"diagnosis: {result.id} ({kind}; setting: {result.setting})")


def diagnose(
    text: Annotated[
        str,
        typer.Argument(
            help="The server's reply or the error message, in quotes; - reads it "
            "from standard input."
        ),
    ],
    step: Annotated[
        Step | None,
        typer.Option(
            "--step",
            case_sensitive=False,
            help="The SMTP step that failed, when known.",
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="The outbound server, for the advice.")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="The outbound port, for the advice.")
    ] = None,
    security: Annotated[
        Security | None,
        typer.Option("--security", case_sensitive=False, help="none, starttls or tls."),
    ] = None,
    auth: Annotated[
        AuthMechanism | None,
        typer.Option("--auth", case_sensitive=False, help="The auth mechanism."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of text.")
    ] = False,
) -> None:
    """Explain an SMTP reply or error that another program printed.

    Exit status 0 when a catalogue entry explains it, 1 when none does.
    """
    if text == "-":
        text = sys.stdin.read()
    with errors_as_exits():
        result = diagnose_text(
            text,
            step=step,
            host=host,
            port=port,
            security=security.value if security else None,
            mechanism=auth.value if auth else None,
        )
    if as_json:
        print_json(result.as_dict())
    else:
        print_text_diagnosis(result)
    if not result.matched:
        raise typer.Exit(EXIT_FAILED)
