"""A minimal, fast SMTP sink for the benchmark, run as its own process.

It accepts every command, stores nothing and answers DATA after an optional
delay, the way a provider's latency looks from the client. With --report it
prints one line per message: the time the DATA command arrived (Unix
seconds) and the message's Message-ID, for latency measurements.

    python bench/sink.py --port 2525 [--data-delay-ms 20] [--report]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import signal
import sys
import time

_MESSAGE_ID = re.compile(rb"(?im)^Message-ID:\s*(\S+)")
_END_OF_DATA = b"\r\n.\r\n"


class SinkProtocol(asyncio.Protocol):
    def __init__(self, delay: float, report: bool) -> None:
        self.delay = delay
        self.report = report
        self.buffer = bytearray()
        self.in_data = False
        self.data_started = 0.0
        self.transport: asyncio.Transport | None = None
        # Replies to the commands of one read, written together.
        self.pending = bytearray()
        # Replies waiting for their time, in order: a delayed reply to DATA
        # holds back every reply after it, as on a real connection.
        self.outgoing: collections.deque[tuple[float, bytearray]] = collections.deque()
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 bench.sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        # RFC 2920, 3.2: a server offering PIPELINING should send the replies
        # to grouped commands as a unit, and must send them all once its input
        # is used up. The replies to what arrived here go out in one write.
        self.pending = bytearray()
        try:
            self._process()
        finally:
            if self.pending:
                self._send(bytes(self.pending))
            self.pending = bytearray()

    def _process(self) -> None:
        while self.buffer:
            if self.in_data:
                # The body starts after the 354 reply; a body of only
                # ".\r\n" never happens because messages have headers.
                end = self.buffer.find(_END_OF_DATA)
                if end < 0:
                    return
                content = bytes(self.buffer[: end + 2])
                del self.buffer[: end + len(_END_OF_DATA)]
                self.in_data = False
                self._accept(content)
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            self._command(line)

    def _write(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)

    def _send(self, reply: bytes, delay: float = 0.0) -> None:
        """Write ``reply`` after ``delay`` seconds and after every earlier reply."""
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        if self.outgoing and due <= self.outgoing[-1][0]:
            self.outgoing[-1][1].extend(reply)
        elif not self.outgoing and delay == 0:
            self._write(reply)
        else:
            self.outgoing.append((due, bytearray(reply)))
            if len(self.outgoing) == 1:
                loop.call_at(due, self._send_due)

    def _send_due(self) -> None:
        _due, reply = self.outgoing.popleft()
        self._write(bytes(reply))
        if self.outgoing:
            asyncio.get_running_loop().call_at(self.outgoing[0][0], self._send_due)
        elif self.closing and self.transport is not None:
            self.transport.close()

    def _reply(self, reply: bytes) -> None:
        self.pending += reply

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        if verb == b"EHLO":
            self._reply(
                b"250-bench.sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                b"250 SIZE 52428800\r\n"
            )
        elif verb == b"DATA":
            self.in_data = True
            self.data_started = time.time()
            self._reply(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"QUIT":
            self._send(bytes(self.pending) + b"221 2.0.0 Bye\r\n")
            self.pending = bytearray()
            self.closing = True
            if not self.outgoing:
                assert self.transport is not None
                self.transport.close()
        else:
            self._reply(b"250 2.0.0 OK\r\n")

    def _accept(self, content: bytes) -> None:
        if self.report:
            match = _MESSAGE_ID.search(content)
            message_id = match.group(1).decode() if match else "-"
            sys.stdout.write(f"{self.data_started:.6f} {message_id}\n")
            sys.stdout.flush()
        reply = b"250 2.0.0 OK queued as BENCH\r\n"
        if self.delay:
            # Replies already gathered from this read come first.
            if self.pending:
                self._send(bytes(self.pending))
                self.pending = bytearray()
            self._send(reply, self.delay)
        else:
            self._reply(reply)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-delay-ms", type=float, default=0.0)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SinkProtocol(args.data_delay_ms / 1000, args.report),
        "127.0.0.1",
        args.port,
        backlog=512,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sys.stderr.write(f"bench sink listening on 127.0.0.1:{args.port}\n")
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
