"""Read the replies of one mail transaction, pipelined or one by one.

aiosmtplib reads exactly one reply per command it wrote and drops whatever
else arrives, so it cannot take the several replies a server sends at once
to commands pipelined as RFC 2920 allows. For the span of one transaction
the session hands the connection's transport to a ReplyReader, which keeps
every complete reply in order, and gives it back to aiosmtplib afterwards.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque

import aiosmtplib

# The bounds aiosmtplib applies, so a server cannot make either reader
# buffer without limit.
MAX_LINE_LENGTH = 8192
MAX_REPLY_LENGTH = MAX_LINE_LENGTH * 4
_CONTROL_IN_COMMAND = re.compile(rb"[\x00-\x1f\x7f]")


class ReplyReader(asyncio.Protocol):
    """A protocol that takes over a connected transport and queues replies.

    Use it as a context manager around one transaction. On leaving, the
    transport goes back to its previous protocol when every reply asked for
    was read. Otherwise the connection is closed, because a late reply would
    be paired with the next command.
    """

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        protocol = client.protocol
        transport = protocol.transport if protocol is not None else None
        if protocol is None or transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._client = client
        self._owner = protocol
        self._transport: asyncio.Transport = transport  # type: ignore[assignment]
        self._buffer = bytearray()
        self._replies: deque[tuple[int, str]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._lost: BaseException | None = None
        # Commands written whose replies have not been taken yet.
        self.outstanding = 0

    def attach(self) -> None:
        """Take the connection's incoming data from aiosmtplib."""
        self._transport.set_protocol(self)

    def detach(self) -> None:
        """Give the connection back, or close it if replies are still owed."""
        if self._lost is not None:
            return
        if self.outstanding or self._replies or self._buffer:
            self._client.close()
        else:
            self._transport.set_protocol(self._owner)

    def __enter__(self) -> ReplyReader:
        self.attach()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.detach()

    @property
    def has_surplus(self) -> bool:
        """Tell whether more replies arrived than commands were sent."""
        return len(self._replies) > self.outstanding

    @staticmethod
    def encode(*commands: bytes) -> bytes:
        """Return ``commands`` as one block of lines, each ended by CRLF."""
        for command in commands:
            if _CONTROL_IN_COMMAND.search(command):
                raise ValueError("an SMTP command contains a control character")
        return b"".join(command + b"\r\n" for command in commands)

    def write(self, *commands: bytes) -> None:
        """Send ``commands`` in one write; each one expects one reply."""
        self.write_raw(self.encode(*commands))
        self.outstanding += len(commands)

    def write_raw(self, data: bytes) -> None:
        if self._lost is not None or self._transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._transport.write(data)

    async def reply(self, timeout: float | None) -> tuple[int, str]:
        """Return the next reply, waiting at most ``timeout`` seconds for it."""
        if not self._replies and self._lost is None:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            # A plain timer: asyncio.timeout() does more work per wait, and
            # a pipelined message waits twice.
            timer = (
                None
                if timeout is None
                else loop.call_later(timeout, self._time_out, waiter)
            )
            try:
                # Woken only by a complete reply or a lost connection.
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        if self._replies:
            self.outstanding -= 1
            return self._replies.popleft()
        assert self._lost is not None
        raise self._lost

    @staticmethod
    def _time_out(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            timed_out = aiosmtplib.SMTPReadTimeoutError(
                "Timed out waiting for server response"
            )
            timed_out.__cause__ = TimeoutError()
            waiter.set_exception(timed_out)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._replies or self._lost is not None:
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            self._parse()
        except aiosmtplib.SMTPResponseException as exc:
            self._lost = exc
            self._buffer.clear()
            self._client.close()
        self._wake()

    def _parse(self) -> None:
        buffer = self._buffer
        while True:
            start = 0
            lines: list[bytes] = []
            code = -1
            complete = False
            while (end := buffer.find(b"\n", start)) >= 0:
                line = bytes(buffer[start : end + 1])
                if len(line) > MAX_LINE_LENGTH:
                    raise aiosmtplib.SMTPResponseException(-1, "Response too long")
                try:
                    code = int(line[:3])
                except ValueError:
                    text = line.decode("utf-8", "replace")
                    raise aiosmtplib.SMTPResponseException(
                        -1, f"Malformed SMTP response line: {text}"
                    ) from None
                lines.append(line[4:].strip(b" \t\r\n"))
                start = end + 1
                if line[3:4] != b"-":
                    complete = True
                    break
            if not complete:
                if len(buffer) > MAX_REPLY_LENGTH:
                    raise aiosmtplib.SMTPResponseException(-1, "Response too long")
                return
            del buffer[:start]
            # A byte that is not UTF-8 is kept visible as "\\xff": the text is
            # stored and logged, and neither JSON nor SQLite takes the
            # surrogates that surrogateescape would leave in it.
            text = b"\n".join(lines).decode("utf-8", "backslashreplace")
            self._replies.append((code, text))

    def eof_received(self) -> bool:
        self._lost = aiosmtplib.SMTPServerDisconnected("Unexpected EOF received")
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            lost = aiosmtplib.SMTPServerDisconnected("Connection lost")
            lost.__cause__ = exc
            self._lost = lost
        self._wake()
        # aiosmtplib's protocol learns of it too, so the client reports
        # itself disconnected.
        self._owner.connection_lost(exc)
