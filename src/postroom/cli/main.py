"""The `postroom` command."""

from __future__ import annotations

import typer

from postroom import __version__
from postroom.cli import (
    diagnose,
    event,
    jobs,
    messages,
    presets,
    probe,
    profile,
    profile_auth,
    reports,
    server,
    template,
    tokens,
)

app = typer.Typer(
    help="Postroom: hand business email to your own SMTP provider and record every reply.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.command("serve")(server.serve)
app.command("worker")(server.worker)
app.command("sink")(server.sink)
app.command("scheduler")(jobs.scheduler)
app.command("send")(messages.send)
app.command("diagnose")(diagnose.diagnose)
app.command("presets")(presets.presets)
app.command("probe")(probe.probe)
app.add_typer(profile.app, name="profile")
profile.app.add_typer(profile_auth.oauth_app, name="oauth")
profile.app.command("kerberos")(profile_auth.kerberos)
profile.app.command("client-certificate")(profile_auth.client_certificate)
app.add_typer(messages.app, name="message")
app.add_typer(tokens.app, name="token")
app.add_typer(tokens.key_app, name="key")
app.add_typer(jobs.app, name="job")
app.add_typer(reports.app, name="report")
app.add_typer(template.app, name="template")
app.add_typer(event.app, name="event")


@app.command("version")
def version() -> None:
    """Print Postroom's version."""
    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
