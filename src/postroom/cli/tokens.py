"""`postroom token ...` and `postroom key ...`: API tokens and the secret key."""

from __future__ import annotations

from typing import Annotated

import typer

from postroom.cli.common import print_json, print_table, runtime
from postroom.crypto import generate_key
from postroom.domain import tokens
from postroom.domain.db import transaction
from postroom.domain.rekey import rotate_secrets

app = typer.Typer(help="Create and revoke API bearer tokens.", no_args_is_help=True)
key_app = typer.Typer(
    help="The key that encrypts stored passwords.", no_args_is_help=True
)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name to recognize the token by.")],
) -> None:
    """Create a token and print it once; only its hash is stored."""
    with runtime() as opened, transaction(opened.sessions) as session:
        token = tokens.create_token(session, name)
    typer.echo(token)


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List tokens by name (never the tokens themselves)."""
    with runtime() as opened, transaction(opened.sessions) as session:
        rows = [
            {
                "name": token.name,
                "created_at": token.created_at,
                "last_used_at": token.last_used_at,
            }
            for token in tokens.list_tokens(session)
        ]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["name", "created_at", "last_used_at"])


@app.command("revoke")
def revoke(name: str) -> None:
    """Revoke a token; requests that use it get 401 from now on."""
    with runtime() as opened, transaction(opened.sessions) as session:
        tokens.revoke_token(session, name)
    typer.echo(f"revoked token {name}")


@key_app.command("rotate")
def rotate() -> None:
    """Re-encrypt every stored secret with the first key of POSTROOM_SECRET_KEY."""
    with runtime() as opened, transaction(opened.sessions) as session:
        count = rotate_secrets(session, opened.secrets)
    typer.echo(
        f"re-encrypted {count} stored secrets with the first key; the other keys "
        "can now be removed from POSTROOM_SECRET_KEY"
    )


@key_app.command("generate")
def generate() -> None:
    """Print a new key for POSTROOM_SECRET_KEY."""
    typer.echo(generate_key())
