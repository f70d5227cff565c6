"""`postroom send` and `postroom message ...`: queue messages and inspect them."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import select

from postroom.cli.common import print_fields, print_json, print_table, runtime
from postroom.domain.db import transaction
from postroom.domain.models import OutboxMessage
from postroom.errors import NotFoundError
from postroom.outbox.queue import MessageRequest, enqueue, message_view

app = typer.Typer(help="Inspect queued and sent messages.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def send(
    profile: Annotated[
        str, typer.Option("--profile", help="Email profile to send through.")
    ],
    to: Annotated[
        list[str], typer.Option("--to", help="Recipient; repeat for more.")
    ] = [],  # noqa: B006
    cc: Annotated[
        list[str], typer.Option("--cc", help="Cc recipient; repeat for more.")
    ] = [],  # noqa: B006
    bcc: Annotated[
        list[str], typer.Option("--bcc", help="Bcc recipient; repeat for more.")
    ] = [],  # noqa: B006
    subject: Annotated[str, typer.Option("--subject", help="Subject line.")] = "",
    text: Annotated[str | None, typer.Option("--text", help="Plain-text body.")] = None,
    html: Annotated[str | None, typer.Option("--html", help="HTML body.")] = None,
    from_address: Annotated[
        str | None,
        typer.Option("--from", help="From address (default: the profile's)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a message in the outbox and print its id."""
    with runtime() as opened:
        request = MessageRequest.model_validate(
            {
                "profile": profile,
                "from": from_address,
                "to": to,
                "cc": cc,
                "bcc": bcc,
                "subject": subject,
                "text": text,
                "html": html,
            }
        )
        with transaction(opened.sessions) as session:
            message = enqueue(
                session,
                request,
                source="cli",
                max_bytes=opened.settings.max_message_bytes,
            )
            answer = {
                "id": message.id,
                "message_id": message.message_id,
                "status": str(message.status),
                "held_reason": message.held_reason,
            }
    if as_json:
        print_json(answer)
        return
    typer.echo(answer["id"])
    if answer["held_reason"]:
        typer.echo(f"held: {answer['held_reason']}", err=True)


@app.command("show")
def show(
    message_pk: Annotated[int, typer.Argument(metavar="ID")],
    as_json: JsonOption = False,
) -> None:
    """Show a message with each recipient's reply and every delivery attempt."""
    with runtime() as opened, transaction(opened.sessions) as session:
        message = session.get(OutboxMessage, message_pk)
        if message is None:
            raise NotFoundError(f"no message with id {message_pk}", field="id")
        view = message_view(message)
    if as_json:
        print_json(view)
        return
    print_fields(view, skip=("recipients", "attempts", "last_error"))
    if view["last_error"]:
        error = view["last_error"]
        typer.echo(f"last error: {error.get('cause')}")
        typer.echo(f"fix:        {error.get('fix')}")
    typer.echo("\nrecipients:")
    print_table(
        view["recipients"], ["address", "kind", "status", "reply_code", "reply_text"]
    )
    if view["attempts"]:
        typer.echo("\nattempts:")
        print_table(
            view["attempts"],
            ["number", "started_at", "outcome", "step", "reply_code", "reply_text"],
        )


@app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option("--status", help="Only messages with this status.")
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Only this profile's messages.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List recent messages, newest first."""
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if status:
        query = query.where(OutboxMessage.status == status)
    if profile:
        query = query.where(OutboxMessage.profile_name == profile)
    with runtime() as opened, transaction(opened.sessions) as session:
        views = [message_view(message) for message in session.scalars(query)]
    if as_json:
        print_json(views)
        return
    print_table(
        views,
        ["id", "profile", "status", "subject", "attempt_count", "provider_queue_id"],
    )
