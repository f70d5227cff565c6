"""Shared CLI plumbing: opening the runtime, printing, turning errors into exits."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError

from postroom.config import ConfigError, load_settings
from postroom.crypto import SecretKeyError
from postroom.errors import InvalidInputError, PostroomError
from postroom.logs import configure_logging
from postroom.runtime import Runtime, open_runtime

# Exit statuses: 1 when the operation ran and failed (a test email refused,
# a message not found), 2 when the input was invalid, as Typer does for usage.
EXIT_FAILED = 1
EXIT_INVALID = 2


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def runtime(log_level: str | None = "WARNING") -> Iterator[Runtime]:
    """Open the runtime for one command and map every known error to an exit."""
    try:
        settings = load_settings()
        configure_logging(log_level or settings.log_level, settings.log_format)
        opened = open_runtime(settings)
    except (ConfigError, SecretKeyError) as exc:
        fail(str(exc), EXIT_INVALID)
    try:
        with errors_as_exits():
            yield opened
    finally:
        opened.close()


@contextmanager
def errors_as_exits() -> Iterator[None]:
    try:
        yield
    except InvalidInputError as exc:
        fail(str(exc), EXIT_INVALID)
    except PostroomError as exc:
        fail(str(exc), EXIT_FAILED)
    except SecretKeyError as exc:
        fail(str(exc), EXIT_INVALID)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        fail(problems, EXIT_INVALID)
    except (DataError, IntegrityError) as exc:
        # A value that validation let through and the database rejected. The
        # transaction was rolled back. Only the driver's first line is shown,
        # because SQLAlchemy's full text lists the statement's parameters.
        lines = str(exc.orig or exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        fail(
            f"database: rejected a value ({reason}); nothing was stored",
            EXIT_INVALID,
        )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return str(value)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool | int | float | str):
        return str(value)
    return str(_plain(value))


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=_plain, ensure_ascii=False))


def print_fields(data: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    shown = {key: value for key, value in data.items() if key not in skip}
    width = max((len(key) for key in shown), default=0)
    for key, value in shown.items():
        typer.echo(f"{key.ljust(width)}  {_cell(value)}")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max([len(column), *(len(row[index]) for row in cells)])
        for index, column in enumerate(columns)
    ]
    header = "  ".join(
        column.upper().ljust(widths[index]) for index, column in enumerate(columns)
    )
    typer.echo(header.rstrip())
    for row in cells:
        line = "  ".join(cell.ljust(widths[index]) for index, cell in enumerate(row))
        typer.echo(line.rstrip())


def read_secret_from_stdin(what: str, field: str, option: str | None = None) -> str:
    """Read one line from standard input, or prompt twice on a terminal.

    Exits with an error naming ``field`` when the line is empty or not UTF-8.
    A pipe that produced nothing (an unset variable, a failed command) must
    not store an empty secret, and a secret in another encoding would be
    stored garbled. The error never shows the input.
    """
    if sys.stdin.isatty():
        first = typer.prompt(what, hide_input=True)
        second = typer.prompt(f"Repeat {what.lower()}", hide_input=True)
        if first != second:
            fail(f"{field}: the two {what.lower()} entries do not match", EXIT_INVALID)
        return str(first)
    stream = getattr(sys.stdin, "buffer", None)
    raw: bytes | str = stream.readline() if stream else sys.stdin.readline()
    try:
        # A text stream decodes invalid bytes to surrogates (surrogateescape);
        # turning them back into bytes lets the strict decode reject them.
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
        line = data.decode("utf-8")
    except UnicodeError:
        fail(
            f"{field}: standard input is not valid UTF-8 text; convert the "
            f"{what.lower()} to UTF-8, for example with iconv -f latin1 -t utf-8",
            EXIT_INVALID,
        )
    secret = line.rstrip("\r\n")
    if not secret:
        command = f"postroom ... {option}" if option else "postroom ..."
        message = (
            f"{field}: standard input was empty; pipe the {what.lower()} in as one "
            f"line, for example printf '%s\\n' \"$SECRET\" | {command}"
        )
        if option:
            message += f", or leave out {option}"
        fail(message, EXIT_INVALID)
    return secret
