"""`postroom send` and `postroom message ...`: queue messages and inspect them."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import select

from postroom.cli.common import print_fields, print_json, print_table, runtime
from postroom.domain.db import transaction
from postroom.domain.models import MessageStatus, OutboxMessage
from postroom.domain.validation import MAX_PAGE_SIZE, check_count, check_row_id
from postroom.errors import InvalidInputError, NotFoundError
from postroom.outbox.actions import cancel_message, retry_message
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
        message = session.get(OutboxMessage, check_row_id(message_pk))
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
    limit: Annotated[
        int,
        typer.Option("--limit", help=f"How many, newest first (1-{MAX_PAGE_SIZE})."),
    ] = 20,
    as_json: JsonOption = False,
) -> None:
    """List recent messages, newest first."""
    with runtime() as opened, transaction(opened.sessions) as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id.desc())
        query = query.limit(check_count(limit, "limit", MAX_PAGE_SIZE))
        if status is not None:
            query = query.where(OutboxMessage.status == _check_status(status))
        if profile:
            query = query.where(OutboxMessage.profile_name == profile)
        views = [message_view(message) for message in session.scalars(query)]
    if as_json:
        print_json(views)
        return
    rows = [view | {"why": _why(view)} for view in views]
    print_table(
        rows,
        [
            "id",
            "profile",
            "status",
            "subject",
            "attempt_count",
            "provider_queue_id",
            "why",
        ],
    )


def _why(view: dict[str, object]) -> str | None:
    """A short reason for a message that is not simply sent: why held, or
    the diagnosis of the last failure (``message show`` has the details)."""
    if view.get("held_reason"):
        reason = str(view["held_reason"])
        return reason if len(reason) <= 80 else reason[:79] + "\u2026"
    error = view.get("last_error")
    if isinstance(error, dict) and view.get("status") != "sent":
        return str(error.get("id"))
    return None


def _check_status(value: str) -> MessageStatus:
    try:
        return MessageStatus(value.strip().lower())
    except ValueError:
        choices = ", ".join(status.value for status in MessageStatus)
        raise InvalidInputError(
            f"{value!r} is not a message status; use one of {choices}", field="status"
        ) from None


@app.command("retry")
def retry(
    message_pk: Annotated[int, typer.Argument(metavar="ID")],
    as_json: JsonOption = False,
) -> None:
    """Queue a message again now (waiting, failed, partly sent or cancelled)."""
    with runtime() as opened, transaction(opened.sessions) as session:
        view = message_view(retry_message(session, check_row_id(message_pk)))
    if as_json:
        print_json(view)
        return
    typer.echo(f"message {message_pk} is queued and due now")


@app.command("cancel")
def cancel(
    message_pk: Annotated[int, typer.Argument(metavar="ID")],
    as_json: JsonOption = False,
) -> None:
    """Cancel a queued or held message so that it is not sent."""
    with runtime() as opened, transaction(opened.sessions) as session:
        view = message_view(cancel_message(session, check_row_id(message_pk)))
    if as_json:
        print_json(view)
        return
    typer.echo(f"message {message_pk} is cancelled")
