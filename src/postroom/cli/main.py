"""The `postroom` command."""

from __future__ import annotations

import typer

from postroom import __version__
from postroom.cli import event, messages, profile, server, template, tokens

app = typer.Typer(
    help="Postroom: hand business email to your own SMTP provider and record every reply.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.command("serve")(server.serve)
app.command("worker")(server.worker)
app.command("sink")(server.sink)
app.command("send")(messages.send)
app.add_typer(profile.app, name="profile")
app.add_typer(messages.app, name="message")
app.add_typer(tokens.app, name="token")
app.add_typer(tokens.key_app, name="key")
app.add_typer(template.app, name="template")
app.add_typer(event.app, name="event")


@app.command("version")
def version() -> None:
    """Print Postroom's version."""
    typer.echo(__version__)


def main() -> None:
    app()
