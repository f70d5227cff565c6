"""Log lines: their JSON shape and when they reach the stream."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import UTC, datetime

import pytest

from postroom import logs
from postroom.logs import FLUSH_DELAY_SECONDS, JsonFormatter, LineHandler


class CountingStream(io.StringIO):
    """A stream that counts flushes and shows only what was flushed."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0
        self.flushed = ""

    def flush(self) -> None:
        self.flushes += 1
        self.flushed = self.getvalue()


def make_logger(stream: CountingStream) -> logging.Logger:
    handler = LineHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("postroom.test_logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_line_handler_without_loop_flushes_each_line() -> None:
    stream = CountingStream()
    logger = make_logger(stream)

    logger.info("first")
    assert stream.flushes == 1
    logger.info("second")

    assert stream.flushes == 2
    lines = [json.loads(line) for line in stream.flushed.splitlines()]
    assert [line["message"] for line in lines] == ["first", "second"]


def test_line_handler_on_loop_writes_lines_together() -> None:
    stream = CountingStream()
    logger = make_logger(stream)

    async def main() -> tuple[int, str, str]:
        for number in range(5):
            logger.info("attempt %d", number, extra={"outbox_id": number})
        await asyncio.sleep(0)
        before = stream.flushes, stream.getvalue()
        await asyncio.sleep(FLUSH_DELAY_SECONDS * 2)
        return *before, stream.flushed

    flushes_before, written_before, flushed = asyncio.run(main())

    # Nothing reached the stream on the next turn: the lines wait for more.
    assert (flushes_before, written_before) == (0, "")
    assert stream.flushes == 1
    lines = [json.loads(line) for line in flushed.splitlines()]
    assert [line["outbox_id"] for line in lines] == [0, 1, 2, 3, 4]


class CountingWrites(CountingStream):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_line_handler_writes_once_per_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    # Long enough for fifty loop turns on a busy machine.
    monkeypatch.setattr(logs, "FLUSH_DELAY_SECONDS", 1.0)
    stream = CountingWrites()
    logger = make_logger(stream)

    async def main() -> None:
        for number in range(50):
            logger.info("attempt %d", number)
            await asyncio.sleep(0)
        await asyncio.sleep(1.5)

    asyncio.run(main())

    # A line-buffered stream, such as standard error, makes a system call
    # per write that contains a line end.
    assert stream.writes == stream.flushes == 1
    assert len(stream.flushed.splitlines()) == 50


def test_line_handler_stopped_loop_keeps_lines() -> None:
    stream = CountingStream()
    logger = make_logger(stream)

    def run_one_turn(message: str) -> None:
        loop = asyncio.new_event_loop()

        def log_and_stop() -> None:
            logger.info(message)
            # The flush is scheduled for the next turn, which never comes.
            loop.stop()

        loop.call_soon(log_and_stop)
        loop.run_forever()
        loop.close()

    run_one_turn("last words")
    assert stream.flushed == ""
    # Another loop schedules a flush of its own, which carries both lines.
    loop = asyncio.new_event_loop()
    loop.call_soon(logger.info, "on the next loop")
    loop.run_until_complete(asyncio.sleep(FLUSH_DELAY_SECONDS * 2))
    loop.close()
    messages = [json.loads(line)["message"] for line in stream.flushed.splitlines()]
    assert messages == ["last words", "on the next loop"]

    run_one_turn("stopped again")
    logger.info("after the loops")

    messages = [json.loads(line)["message"] for line in stream.flushed.splitlines()]
    assert messages[2:] == ["stopped again", "after the loops"]


def test_json_time_utc_milliseconds() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("x", logging.INFO, "", 0, "m", (), None)
    for created in (0.0, 1733366400.9994, 1733366401.0005, 1733366401.5):
        record.created = created
        expected = datetime.fromtimestamp(created, UTC).isoformat(
            timespec="milliseconds"
        )
        assert json.loads(formatter.format(record))["time"] == expected


def test_json_empty_field_name() -> None:
    record = logging.LogRecord("x", logging.INFO, "", 0, "m", (), None)
    record.__dict__[""] = "value"

    line = json.loads(JsonFormatter().format(record))

    assert line[""] == "value"


def test_json_values_without_a_json_type() -> None:
    record = logging.LogRecord("x", logging.INFO, "", 0, "m", (), None)
    record.__dict__.update(
        at=datetime(2026, 12, 5, 4, 0, tzinfo=UTC),
        by_code={421: "closed"},
        huge=2**70,
    )

    line = json.loads(JsonFormatter().format(record))

    # As str() writes them, not rejected: a log line is never dropped for
    # a field's type.
    assert line["at"] == "2026-12-05 04:00:00+00:00"
    assert line["by_code"] == {"421": "closed"}
    assert line["huge"] == 2**70


def test_line_handler_writes_errors_at_once() -> None:
    stream = CountingWrites()
    logger = make_logger(stream)

    async def main() -> str:
        logger.info("before")
        logger.error("failed")
        return stream.flushed

    flushed = asyncio.run(main())

    # The error goes out at once, with the line waiting before it.
    messages = [json.loads(line)["message"] for line in flushed.splitlines()]
    assert messages == ["before", "failed"]
    assert stream.writes == 1


def test_write_pending_lines_at_loop_end() -> None:
    stream = CountingStream()
    logger = make_logger(stream)
    logging.getLogger().addHandler(logger.handlers[0])

    async def main() -> None:
        logger.info("last attempt")
        logs.write_pending_lines()

    try:
        asyncio.run(main())
    finally:
        logging.getLogger().removeHandler(logger.handlers[0])

    assert [json.loads(line)["message"] for line in stream.flushed.splitlines()] == [
        "last attempt"
    ]


def test_closed_stream_does_not_fail_the_writer() -> None:
    stream = CountingStream()
    logger = make_logger(stream)
    handler = logger.handlers[0]
    assert isinstance(handler, LineHandler)

    async def main() -> None:
        logger.info("after the stream closed")
        stream.close()
        # A worker writes the waiting lines when it stops, which must not
        # raise.
        handler.write_pending()

    asyncio.run(main())
