"""`postroom template ...`: manage notification templates and preview them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from postroom.cli.common import EXIT_INVALID, fail, print_json, print_table, runtime
from postroom.cli.template_io import (
    print_preview,
    print_view,
    read_data_file,
    template_input,
)
from postroom.domain.db import transaction
from postroom.templates import store
from postroom.templates.preview import preview_template
from postroom.templates.render import RenderLimits
from postroom.templates.spec import TemplateView

app = typer.Typer(
    help="Create, change, list, preview and delete notification templates.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        help="Template definition as JSON or TOML (.toml), with the same fields as "
        "the API; options given on the command line override it. '-' reads JSON "
        "from standard input.",
    ),
]
EventType = Annotated[
    str | None,
    typer.Option(
        "--event-type", help="Event type that triggers it, e.g. order.shipped."
    ),
]
Client = Annotated[
    str | None,
    typer.Option("--client", help="Only this client's events ('' for all clients)."),
]
Locale = Annotated[
    str | None,
    typer.Option(
        "--locale", help="Only events of this language, e.g. de ('' for all)."
    ),
]
Subject = Annotated[
    str | None, typer.Option("--subject", help="Subject template, one line.")
]
HtmlFile = Annotated[
    Path | None,
    typer.Option("--html-file", help="HTML body template file ('-': standard input)."),
]
TextFile = Annotated[
    Path | None,
    typer.Option("--text-file", help="Text body template file ('-': standard input)."),
]
FromOption = Annotated[
    str | None,
    typer.Option("--from", help="From address; default: the profile's ('' to unset)."),
]
Recipients = Annotated[
    list[str] | None,
    typer.Option(
        "--to",
        help="Recipient: an address or a template such as '{{ customer.email }}'; "
        "repeat for more. Replaces the stored list.",
    ),
]
CcOption = Annotated[
    list[str] | None, typer.Option("--cc", help="Cc recipient; repeat for more.")
]
BccOption = Annotated[
    list[str] | None, typer.Option("--bcc", help="Bcc recipient; repeat for more.")
]
ReplyTo = Annotated[
    list[str] | None, typer.Option("--reply-to", help="Reply-To; repeat for more.")
]
Header = Annotated[
    list[str] | None,
    typer.Option("--header", help="Custom header 'Name: value template'; repeatable."),
]
Attachment = Annotated[
    list[str] | None,
    typer.Option(
        "--attachment",
        help="Expression giving files from the event data, e.g. order.invoice; "
        "repeatable. Use --file for file names, types and inline images.",
    ),
]
Unsubscribe = Annotated[
    list[str] | None,
    typer.Option(
        "--list-unsubscribe",
        help="List-Unsubscribe URI (https or mailto, may use the data); repeatable.",
    ),
]
OneClick = Annotated[
    bool | None,
    typer.Option(
        "--one-click-unsubscribe/--no-one-click-unsubscribe",
        help="Add List-Unsubscribe-Post for one-click unsubscription (RFC 8058).",
    ),
]
Profile = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="Email profile to send through; default DefaultNotificationProfile.",
    ),
]
Active = Annotated[
    bool | None,
    typer.Option("--active/--inactive", help="Whether events use the template."),
]
SampleData = Annotated[
    Path | None,
    typer.Option("--sample-data-file", help="JSON file of event data for previews."),
]


@app.command("create")
def create(
    name: Annotated[str | None, typer.Argument(help="Template name.")] = None,
    file: FileOption = None,
    event_type: EventType = None,
    client: Client = None,
    locale: Locale = None,
    subject: Subject = None,
    html_file: HtmlFile = None,
    text_file: TextFile = None,
    from_address: FromOption = None,
    to: Recipients = None,
    cc: CcOption = None,
    bcc: BccOption = None,
    reply_to: ReplyTo = None,
    header: Header = None,
    attachment: Attachment = None,
    list_unsubscribe: Unsubscribe = None,
    one_click_unsubscribe: OneClick = None,
    profile: Profile = None,
    active: Active = None,
    sample_data_file: SampleData = None,
    as_json: JsonOption = False,
) -> None:
    """Create a template; it is compiled first and the variables it reads are listed."""
    options = dict(
        name=name,
        event_type=event_type,
        client=client,
        locale=locale,
        subject=subject,
        html_file=html_file,
        text_file=text_file,
        from_address=from_address,
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        header=header,
        attachment=attachment,
        list_unsubscribe=list_unsubscribe,
        list_unsubscribe_post=one_click_unsubscribe,
        profile=profile,
        is_active=active,
        sample_data_file=sample_data_file,
    )
    with runtime() as opened:
        data = template_input(options, file)
        limits = RenderLimits.from_settings(opened.settings)
        with transaction(opened.sessions) as session:
            view = TemplateView.of(store.create_template(session, limits, data))
    print_view(view, as_json)


@app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="Template to change.")],
    new_name: Annotated[
        str | None, typer.Option("--name", help="Rename the template.")
    ] = None,
    file: FileOption = None,
    event_type: EventType = None,
    client: Client = None,
    locale: Locale = None,
    subject: Subject = None,
    html_file: HtmlFile = None,
    text_file: TextFile = None,
    from_address: FromOption = None,
    to: Recipients = None,
    cc: CcOption = None,
    bcc: BccOption = None,
    reply_to: ReplyTo = None,
    header: Header = None,
    attachment: Attachment = None,
    list_unsubscribe: Unsubscribe = None,
    one_click_unsubscribe: OneClick = None,
    profile: Profile = None,
    active: Active = None,
    sample_data_file: SampleData = None,
    as_json: JsonOption = False,
) -> None:
    """Change the fields given; the others stay. The result is compiled again."""
    options = dict(
        name=new_name,
        event_type=event_type,
        client=client,
        locale=locale,
        subject=subject,
        html_file=html_file,
        text_file=text_file,
        from_address=from_address,
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        header=header,
        attachment=attachment,
        list_unsubscribe=list_unsubscribe,
        list_unsubscribe_post=one_click_unsubscribe,
        profile=profile,
        is_active=active,
        sample_data_file=sample_data_file,
    )
    with runtime() as opened:
        data = template_input(options, file)
        limits = RenderLimits.from_settings(opened.settings)
        with transaction(opened.sessions) as session:
            template = store.update_template(session, limits, name, data)
            view = TemplateView.of(template)
    print_view(view, as_json)


@app.command("list")
def list_(
    event_type: EventType = None,
    client: Annotated[
        str | None,
        typer.Option("--client", help="This client's and all-client templates."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List templates by name."""
    with runtime() as opened, transaction(opened.sessions) as session:
        views = [
            TemplateView.of(template).model_dump(mode="json")
            for template in store.list_templates(
                session, event_type=event_type, client=client
            )
        ]
    if as_json:
        print_json(views)
        return
    print_table(
        views, ["name", "event_type", "client", "locale", "profile", "is_active"]
    )


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Template name.")],
    as_json: JsonOption = False,
) -> None:
    """Show a template with its bodies and the variables it reads."""
    with runtime() as opened, transaction(opened.sessions) as session:
        view = TemplateView.of(store.get_template(session, name))
    print_view(view, as_json)


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Template name.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm; required to delete.")
    ] = False,
) -> None:
    """Delete a template; messages it already queued are not affected."""
    if not yes:
        fail(f"add --yes to delete template {name!r}", EXIT_INVALID)
    with runtime() as opened, transaction(opened.sessions) as session:
        store.delete_template(session, name)
    typer.echo(f"deleted template {name}")


@app.command("preview")
def preview(
    name: Annotated[
        str | None, typer.Argument(help="Stored template; leave out with --file.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="Preview this definition instead; nothing is saved."
        ),
    ] = None,
    data_file: Annotated[
        Path | None,
        typer.Option("--data-file", help="Event data (JSON); default: sample_data."),
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Event data as inline JSON.")
    ] = None,
    client: Annotated[
        str | None, typer.Option("--client", help="Event client.")
    ] = None,
    locale: Annotated[
        str | None, typer.Option("--locale", help="Event locale.")
    ] = None,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Print the message exactly as it would be sent."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Render a template with sample data and show the message; nothing is queued."""
    if (name is None) == (file is None):
        fail("give a template NAME or --file, not both", EXIT_INVALID)
    event_data: Any = None
    if data_file is not None:
        event_data = read_data_file(data_file)
    elif data is not None:
        try:
            event_data = json.loads(data)
        except json.JSONDecodeError as exc:
            fail(f"--data is not valid JSON: {exc}", EXIT_INVALID)
    if event_data is not None and not isinstance(event_data, dict):
        fail("event data must be a JSON object", EXIT_INVALID)

    with runtime() as opened:
        limits = RenderLimits.from_settings(opened.settings)
        with transaction(opened.sessions) as session:
            if file is not None:
                draft = template_input({}, file)
                template = store.preview_state(session, limits, draft)
            else:
                assert name is not None
                template = store.get_template(session, name)
            result = preview_template(
                session,
                limits,
                template,
                data=event_data,
                client=client,
                locale=locale,
                include_raw=raw or as_json,
            )
    if as_json:
        print_json(result)
    elif raw:
        typer.echo(result["message"]["raw"].replace("\r\n", "\n"), nl=False)
    else:
        print_preview(result)
