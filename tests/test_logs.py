"""Log lines: their JSON shape and when they reach the stream."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import UTC, datetime

from postroom.logs import JsonFormatter, LineHandler


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


def test_line_handler_on_loop_flushes_per_turn() -> None:
    stream = CountingStream()
    logger = make_logger(stream)

    async def main() -> tuple[int, str]:
        for number in range(5):
            logger.info("attempt %d", number, extra={"outbox_id": number})
        before = stream.flushes
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return before, stream.flushed

    before, flushed = asyncio.run(main())

    assert before == 0
    assert stream.flushes == 1
    lines = [json.loads(line) for line in flushed.splitlines()]
    assert [line["outbox_id"] for line in lines] == [0, 1, 2, 3, 4]


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
    loop.run_until_complete(asyncio.sleep(0.01))
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
