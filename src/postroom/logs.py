"""Logging setup: one JSON object per line, with named fields.

Callers pass structured fields through ``extra={...}``; every field that is
not a standard LogRecord attribute becomes a key of the JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

# Uvicorn adds "color_message", its message with ANSI colour codes, for its
# own console formatter; it has no place in a log line.
_RECORD_ATTRIBUTES = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


# Values JSON has no type for are written as str() gives them, dates and
# dataclasses included, whichever encoder writes the line.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# For what orjson rejects: keys that are not strings, integers beyond 64
# bits. Made once: json.dumps with options builds an encoder on every call.
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


def _encode(entry: dict[str, Any]) -> str:
    # A worker writes a line per delivery attempt. Measured on such a line,
    # orjson takes about a tenth of the standard library's time.
    try:
        return orjson.dumps(entry, default=str, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return _ENCODER.encode(entry)


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        # The time up to the second, formatted once per second.
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = datetime.fromtimestamp(second, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S"
            )
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
        )
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


# How long a line logged on an event loop may wait for the lines after it.
FLUSH_DELAY_SECONDS = 0.05


class LineHandler(logging.StreamHandler[IO[str]]):
    """A stream handler that writes the lines of an event loop together.

    A worker logs a line per delivery attempt, thousands per second under
    load. On a thread that runs an event loop, lines are gathered and
    written to the stream with one write and one flush, at most
    FLUSH_DELAY_SECONDS after the first of them. Standard error is line
    buffered, so writing each line on its own would be a system call per
    line. Elsewhere each line is written and flushed at once, and so is a
    line at ERROR or above, after the lines before it.
    """

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        # The loop that has a flush scheduled, if any. A loop that stops
        # before running it leaves the lines to the next flush, or to
        # close() and logging.shutdown() at exit.
        self._flush_on: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        # Handler.handle() holds the lock here.
        self._lines.append(line)
        if record.levelno >= logging.ERROR:
            # It may be the last line before a crash.
            self.write_pending()
        else:
            self.flush()

    def flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.write_pending()
            return
        if self._flush_on is not loop:
            self._flush_on = loop
            loop.call_later(FLUSH_DELAY_SECONDS, self._flush_now)

    def _flush_now(self) -> None:
        self._flush_on = None
        self.write_pending()

    def write_pending(self) -> None:
        """Write the lines waiting for a flush now, and flush the stream."""
        with self.lock or contextlib.nullcontext():
            text = "".join(self._lines)
            self._lines.clear()
            if not text:
                # With no lines waiting, nothing is lost when a closed stream
                # cannot flush (at exit, after a test closed it).
                with contextlib.suppress(OSError, ValueError):
                    super().flush()
                return
            try:
                self.stream.write(text)
                super().flush()
            except Exception:
                # The stream is broken or closed: the lines are lost and
                # reported as the standard handler reports each lost line.
                # Raising here would fail the caller, a worker that stops.
                self.handleError(logging.makeLogRecord({"msg": text}))

    def close(self) -> None:
        self.write_pending()
        super().close()


def write_pending_lines() -> None:
    """Write the lines that wait in the root logger's handlers now.

    For the end of an event loop: a scheduled flush runs only while its
    loop does.
    """
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LineHandler):
            handler.write_pending()


def configure_logging(
    level: str = "INFO", fmt: str = "json", stream: IO[str] | None = None
) -> None:
    """Send every log record to ``stream`` (standard error by default)."""
    # Neither format writes the thread or the process, and a worker logs a
    # line per delivery attempt: skip looking them up for every record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # Nor the source file and line. The logging module's own comments name
    # this setting as the way to skip walking the stack for them.
    logging._srcfile = None
    handler = LineHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosmtpd logs every session at INFO and warns about its own deprecated
    # login_data attribute on each AUTH; only its errors are useful here.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # Alembic announces its dialect at INFO on every start.
    logging.getLogger("alembic").setLevel(logging.WARNING)
