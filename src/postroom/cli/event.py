"""`postroom event ...`: send business events and look them up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from postroom.cli.common import (
    EXIT_INVALID,
    fail,
    print_fields,
    print_json,
    print_table,
    runtime,
)
from postroom.cli.template_io import read_data_file
from postroom.domain.db import transaction
from postroom.domain.notifications import Event
from postroom.domain.validation import check_row_id
from postroom.errors import NotFoundError
from postroom.events.schema import EventInput, check_event
from postroom.events.service import record_events
from postroom.events.views import event_view

app = typer.Typer(help="Send business events and look them up.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@app.command("send")
def send(
    event_type: Annotated[
        str, typer.Argument(metavar="TYPE", help="Event type, e.g. order.shipped.")
    ],
    client: Annotated[
        str | None, typer.Option("--client", help="Client the event belongs to.")
    ] = None,
    locale: Annotated[
        str | None, typer.Option("--locale", help="Language tag, e.g. de-CH.")
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Event data as inline JSON.")
    ] = None,
    data_file: Annotated[
        Path | None,
        typer.Option(
            "--data-file",
            help="Event data as a JSON (or .toml) file; '-' reads standard input.",
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Unique key; sending the same event with it again queues nothing.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Record an event: each matching template queues one message; print their ids."""
    if data is not None and data_file is not None:
        fail("give --data or --data-file, not both", EXIT_INVALID)
    event_data: Any = {}
    if data_file is not None:
        event_data = read_data_file(data_file)
    elif data is not None:
        try:
            event_data = json.loads(data)
        except ValueError as exc:
            # JSONDecodeError, or a number with more digits than int() reads.
            fail(f"--data is not valid JSON: {exc}", EXIT_INVALID)
    if not isinstance(event_data, dict):
        fail("event data must be a JSON object", EXIT_INVALID)

    with runtime() as opened:
        event = check_event(
            EventInput(
                type=event_type,
                client=client,
                locale=locale,
                data=event_data,
                idempotency_key=idempotency_key,
            )
        )
        (result,) = record_events(
            opened.sessions, opened.settings, [event], source="cli"
        )
    answer = result.answer
    if as_json:
        print_json(answer)
        return
    for message in answer["messages"]:
        typer.echo(message["id"])
        if message["held_reason"]:
            typer.echo(
                f"held: message {message['id']}: {message['held_reason']}", err=True
            )
    if result.replayed:
        typer.echo(
            f"repeat of event {answer['event_id']}: nothing new was queued", err=True
        )
    if not answer["messages"]:
        typer.echo(answer["detail"], err=True)


@app.command("show")
def show(
    event_pk: Annotated[int, typer.Argument(metavar="ID")],
    as_json: JsonOption = False,
) -> None:
    """Show an event, its data and the status of each message it queued."""
    with runtime() as opened, transaction(opened.sessions) as session:
        event = session.get(Event, check_row_id(event_pk))
        if event is None:
            raise NotFoundError(f"no event with id {event_pk}", field="id")
        view = event_view(session, event, include_data=True)
    if as_json:
        print_json(view)
        return
    print_fields(view, skip=("messages", "data"))
    typer.echo("\nmessages:")
    print_table(
        view["messages"], ["id", "template", "profile", "status", "held_reason"]
    )
