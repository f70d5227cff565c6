"""`postroom presets`: list the provider presets a profile can start from."""

from __future__ import annotations

from typing import Annotated

import typer

from postroom.cli.common import print_json, print_table
from postroom.domain.presets import PRESETS


def presets(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of text.")
    ] = False,
) -> None:
    """List provider presets: server, port, security, auth and requirements.

    Use one with `postroom profile create NAME --preset NAME`.
    """
    rows = [preset.as_dict() for preset in PRESETS]
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["name", "provider", "host", "port", "security", "mechanism"])
    typer.echo("")
    for row in rows:
        typer.echo(f"{row['name']}: {row['note']}")
        if row["regions"]:
            regions = ", ".join(row["regions"])
            default = row["default_region"]
            suffix = f" (default {default})" if default else ""
            typer.echo(f"  regions{suffix}: {regions}")
