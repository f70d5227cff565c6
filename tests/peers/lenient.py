"""An SMTP server that ends DATA the way servers open to SMTP smuggling did.

Besides the correct <CR><LF>.<CR><LF>, it takes <LF>.<LF>, <LF>.<CR><LF>,
<CR><LF>.<LF> and <CR>.<CR> as the end of the message, and reads whatever
follows as new commands. A client that lets one of those sequences through
in a body therefore delivers a second, smuggled message here; a correct
client delivers exactly one.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field

# The earliest of these ends the message.
_DATA_END = re.compile(rb"\r\n\.\r\n|\n\.\n|\n\.\r\n|\r\n\.\n|\r\.\r")


@dataclass
class Smuggled:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class LenientServer:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Smuggled] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def start(self) -> LenientServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(
                asyncio.start_server(self._session, self.host, self.port)
            )
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        buffer = b""
        mail_from, rcpt_tos = "", []
        writer.write(b"220 lenient.test ESMTP\r\n")
        try:
            while True:
                while b"\n" not in buffer:
                    chunk = await reader.read(65536)
                    if not chunk:
                        return
                    buffer += chunk
                line, _, buffer = buffer.partition(b"\n")
                command = line.rstrip(b"\r").decode("utf-8", "replace")
                self.commands.append(command)
                verb = command.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    writer.write(
                        b"250-lenient.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n"
                    )
                elif verb == "MAIL":
                    mail_from, rcpt_tos = command.partition(":")[2].strip(" <>"), []
                    writer.write(b"250 2.1.0 OK\r\n")
                elif verb == "RCPT":
                    rcpt_tos.append(command.partition(":")[2].strip(" <>"))
                    writer.write(b"250 2.1.5 OK\r\n")
                elif verb == "DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    while not _DATA_END.search(buffer):
                        chunk = await reader.read(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    end = _DATA_END.search(buffer)
                    assert end is not None
                    content, buffer = buffer[: end.start()], buffer[end.end() :]
                    self.messages.append(Smuggled(mail_from, rcpt_tos, content))
                    writer.write(b"250 2.0.0 OK queued as LENIENT\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"250 2.0.0 OK\r\n")
                await writer.drain()
        except ConnectionError:
            return
        finally:
            writer.close()
