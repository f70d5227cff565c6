"""Reading template definitions and event data from files, and printing templates."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import typer

from postroom.cli.common import EXIT_INVALID, fail, print_fields, print_json
from postroom.templates.spec import TemplateInput, TemplateView


def read_text(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", EXIT_INVALID)
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text", EXIT_INVALID)


def read_data_file(path: Path) -> Any:
    """Read JSON, or TOML for a .toml file; exit with a clear error otherwise."""
    text = read_text(path)
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(text)
        return json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        # ValueError also covers JSONDecodeError and numbers with more digits
        # than int() reads.
        fail(
            f"{path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}",
            EXIT_INVALID,
        )


def parse_headers(values: list[str]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, colon, text = value.partition(":")
        if not colon or not name.strip():
            fail(f"--header {value!r} must look like 'Name: value'", EXIT_INVALID)
        headers[name.strip()] = text.strip()
    return headers


def template_input(options: dict[str, Any], file: Path | None) -> TemplateInput:
    fields: dict[str, Any] = {}
    if file is not None:
        loaded = read_data_file(file)
        if not isinstance(loaded, dict):
            fail(f"{file} must contain an object with template fields", EXIT_INVALID)
        fields.update(loaded)

    html_file = options.pop("html_file", None)
    text_file = options.pop("text_file", None)
    sample_file = options.pop("sample_data_file", None)
    if html_file is not None:
        fields["html_body"] = read_text(html_file)
    if text_file is not None:
        fields["text_body"] = read_text(text_file)
    if sample_file is not None:
        fields["sample_data"] = read_data_file(sample_file)
    headers = options.pop("header", None)
    if headers is not None:
        fields["headers"] = parse_headers(headers)
    attachments = options.pop("attachment", None)
    if attachments is not None:
        fields["attachments"] = [{"source": source} for source in attachments]
    # Options override the file. Where the file uses an alias ("html",
    # "from"), the option's own name comes first among the aliases and wins.
    fields.update({key: value for key, value in options.items() if value is not None})
    return TemplateInput.model_validate(fields)


def print_view(view: TemplateView, as_json: bool) -> None:
    if as_json:
        print_json(view.model_dump(mode="json"))
        return
    shown = view.model_dump(exclude={"html_body", "text_body", "sample_data"})
    print_fields(shown)
    for name in ("text_body", "html_body"):
        body = getattr(view, name)
        if body:
            typer.echo(f"\n{name}:\n{body.rstrip()}")


def print_preview(preview: dict[str, Any]) -> None:
    message = preview["message"]
    typer.echo(f"template  {preview['template']}")
    typer.echo(f"profile   {preview['profile']}")
    if preview["held_reason"]:
        typer.echo(f"held      {preview['held_reason']}")
    recipients = ", ".join(
        f"{item['address']} ({item['kind']})"
        for item in message["envelope"]["recipients"]
    )
    typer.echo(f"envelope  {message['envelope']['sender']} -> {recipients}\n")
    for header in message["headers"]:
        typer.echo(f"{header['name']}: {header['value']}")
    for part in message["parts"]:
        described = part["content_type"]
        for key in ("disposition", "filename", "content_id"):
            if part.get(key):
                described += f"; {key}={part[key]}"
        if "size" in part:
            described += f"; {part['size']} bytes"
        typer.echo(f"\n--- {described}")
        if "content" in part:
            typer.echo(part["content"].rstrip("\n"))
