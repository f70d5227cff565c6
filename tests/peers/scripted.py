"""A raw SMTP server whose every reply a test can script.

aiosmtpd is the well-behaved peer. This one misbehaves on purpose, the way
providers do: a 554 greeting, a greeting that never comes, 530 before
STARTTLS, a 421 in the middle of a session, or a connection dropped after
DATA before the reply. It runs its own event loop in a thread on 127.0.0.1.

Replies are keyed by SMTP verb (``MAIL``, ``RCPT``, ``DATA`` for the reply
after the message, ``DATA_START`` for the 354, ``AUTH``, ``STARTTLS``,
``EHLO``...). A value is a reply string (lines separated by newlines), a
list used one item per command, a callable ``(argument) -> reply``, or an
action: DROP closes the connection, HANG never replies, Delay waits first,
Raw writes bytes that are not an SMTP reply (a banner of another protocol, a
TLS alert) and then drops or hangs.

With ``sniff_tls`` the server behaves like an implicit-TLS port: a client
whose first bytes are a TLS ClientHello gets a TLS session, and a client that
waits for a greeting gets ``greeting`` (often a Raw or HANG) after
``sniff_seconds`` of silence.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

DROP = "__drop__"
HANG = "__hang__"


@dataclass(frozen=True)
class Delay:
    seconds: float
    then: str


@dataclass(frozen=True)
class Raw:
    data: bytes
    then: str = DROP


Reply = str | Delay | Raw | Callable[[str], "str | Delay | Raw"]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    login: str | None


@dataclass
class ScriptedServer:
    greeting: str | Delay | Raw = "220 scripted.test ESMTP ready"
    # Extension lines after the first EHLO line, before and after STARTTLS.
    extensions: list[str] = field(
        default_factory=lambda: ["PIPELINING", "SIZE 10485760", "8BITMIME", "STARTTLS"]
    )
    extensions_after_tls: list[str] | None = None
    replies: dict[str, Any] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False
    # Implicit TLS for clients that start with a ClientHello, ``greeting``
    # for clients that wait this many seconds in silence.
    sniff_tls: bool = False
    sniff_seconds: float = 0.3
    # With sniff_tls, bytes sent in reply to a ClientHello instead of a
    # handshake. A TLS alert imitates a server whose TLS setup rejects the
    # client's versions or ciphers.
    tls_alert: bytes | None = None
    host: str = "127.0.0.1"
    # Reject every AUTH (PLAIN, LOGIN, CRAM-MD5 or any mechanism with an
    # initial response) with a 535 that quotes each line the client sent in
    # the exchange, as sent and base64-decoded, the way some servers echo it.
    auth_echo: bool = False

    port: int = 0
    messages: list[Received] = field(default_factory=list)
    # Every command line as received, AUTH payloads included, for assertions.
    commands: list[str] = field(default_factory=list)
    # With auth_echo, each line the client sent during AUTH: the initial
    # response and every answer to a 334, as sent.
    auth_lines: list[str] = field(default_factory=list)
    connections: int = 0
    # Sessions open at the same time: now, and the most seen.
    active: int = 0
    max_active: int = 0

    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.AbstractServer | None = None
    _thread: threading.Thread | None = None
    _counters: dict[str, int] = field(default_factory=dict)
    # Strong references: the loop keeps only weak ones to running tasks.
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def start(self) -> ScriptedServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            if self.sniff_tls:
                listener = socket.create_server((self.host, self.port))
                listener.setblocking(False)
                self.port = listener.getsockname()[1]
                self._keep(loop.create_task(self._sniffing_accept(listener)))
                ready.set()
                loop.run_forever()
                listener.close()
                loop.close()
                return
            ssl_context = self.tls_context if self.implicit_tls else None
            self._server = loop.run_until_complete(
                asyncio.start_server(
                    self._session, self.host, self.port, ssl=ssl_context
                )
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            loop = self._loop

            def shutdown() -> None:
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                loop.stop()

            loop.call_soon_threadsafe(shutdown)
        if self._thread is not None:
            self._thread.join(5)

    def drop_connections(self) -> None:
        """Close every open session without a word, as an idle timeout does."""
        assert self._loop is not None
        done = threading.Event()

        def drop() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            done.set()

        self._loop.call_soon_threadsafe(drop)
        done.wait(5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    async def _sniffing_accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            connection, _address = await loop.sock_accept(listener)
            self._keep(loop.create_task(self._sniff(connection)))

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sniff(self, connection: socket.socket) -> None:
        """Start TLS for a ClientHello, or a plain session after silence."""
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(connection.fileno(), ready)
        try:
            await asyncio.wait_for(readable, self.sniff_seconds)
            first = connection.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            first = b""
        finally:
            loop.remove_reader(connection.fileno())
        # 0x16 is the TLS record type of a handshake message.
        implicit = first == b"\x16"
        if implicit and self.tls_alert is not None:
            await loop.sock_recv(connection, 65536)
            await loop.sock_sendall(connection, self.tls_alert)
            connection.close()
            return

        def protocol() -> asyncio.StreamReaderProtocol:
            return asyncio.StreamReaderProtocol(
                asyncio.StreamReader(), partial(self._session, implicit=implicit)
            )

        try:
            await loop.connect_accepted_socket(
                protocol, connection, ssl=self.tls_context if implicit else None
            )
        except (OSError, ssl.SSLError):
            connection.close()

    def _scripted(
        self, verb: str, argument: str, default: str | Delay
    ) -> str | Delay | Raw:
        if verb not in self.replies:
            return default
        value = self.replies[verb]
        if isinstance(value, list):
            index = self._counters.get(verb, 0)
            self._counters[verb] = index + 1
            value = value[min(index, len(value) - 1)]
        if callable(value) and not isinstance(value, Delay):
            value = value(argument)
        return value  # type: ignore[no-any-return]

    async def _session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        implicit: bool | None = None,
    ) -> None:
        self.connections += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self._writers.add(writer)
        tls = self.implicit_tls if implicit is None else implicit
        state: dict[str, Any] = {"tls": tls, "login": None}
        greeting = self.greeting
        if tls and self.sniff_tls:
            greeting = "220 scripted.test ESMTP ready"
        try:
            if not await self._send(writer, greeting):
                return
            await self._dialogue(reader, writer, state)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self.active -= 1
            self._writers.discard(writer)
            writer.close()

    async def _send(
        self, writer: asyncio.StreamWriter, reply: str | Delay | Raw
    ) -> bool:
        """Write a reply; return False when the script ends the session."""
        if isinstance(reply, Delay):
            await asyncio.sleep(reply.seconds)
            reply = reply.then
        if isinstance(reply, Raw):
            writer.write(reply.data)
            await writer.drain()
            reply = reply.then
        if reply == DROP:
            writer.transport.abort()
            return False
        if reply == HANG:
            await asyncio.sleep(3600)
            return False
        writer.write(_format(reply))
        await writer.drain()
        return True

    async def _dialogue(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        state: dict[str, Any],
    ) -> None:
        mail_from: str | None = None
        rcpt_tos: list[str] = []
        reply: str | Delay | Raw | None
        while True:
            line = await reader.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self.commands.append(text)
            verb, _, argument = text.partition(" ")
            verb = verb.upper()

            if verb in ("EHLO", "HELO"):
                reply = self._scripted(verb, argument, self._ehlo_reply(state["tls"]))
            elif verb == "STARTTLS":
                reply = self._scripted(
                    "STARTTLS", argument, "220 2.0.0 Ready to start TLS"
                )
                if not await self._send(writer, reply):
                    return
                if (
                    isinstance(reply, str)
                    and reply.startswith("220")
                    and self.tls_context
                ):
                    await writer.start_tls(self.tls_context)
                    state["tls"] = True
                continue
            elif verb == "AUTH":
                reply = await self._auth(reader, writer, argument, state)
                if reply is None:
                    return
            elif verb == "MAIL":
                mail_from = argument.partition(":")[2].split(" ")[0].strip("<>")
                rcpt_tos = []
                reply = self._scripted("MAIL", argument, "250 2.1.0 Sender OK")
            elif verb == "RCPT":
                address = argument.partition(":")[2].split(" ")[0].strip("<>")
                reply = self._scripted("RCPT", address, "250 2.1.5 Recipient OK")
                if isinstance(reply, str) and reply.startswith("25"):
                    rcpt_tos.append(address)
            elif verb == "DATA":
                start = self._scripted("DATA_START", argument, "354 Start mail input")
                if not await self._send(writer, start):
                    return
                if not (isinstance(start, str) and start.startswith("354")):
                    continue
                content = await _read_data(reader)
                if content is None:
                    return
                reply = self._scripted(
                    "DATA", argument, "250 2.0.0 OK queued as SCRIPTED1"
                )
                final = reply.then if isinstance(reply, Delay) else reply
                if isinstance(final, str) and final.startswith("250"):
                    self.messages.append(
                        Received(
                            mail_from or "", list(rcpt_tos), content, state["login"]
                        )
                    )
            elif verb == "RSET":
                mail_from, rcpt_tos = None, []
                reply = self._scripted("RSET", argument, "250 2.0.0 OK")
            elif verb == "QUIT":
                await self._send(
                    writer, self._scripted("QUIT", argument, "221 2.0.0 Bye")
                )
                return
            elif verb == "NOOP":
                reply = self._scripted("NOOP", argument, "250 2.0.0 OK")
            else:
                reply = self._scripted(
                    verb, argument, "502 5.5.2 Command not recognized"
                )
            if not await self._send(writer, reply):
                return

    def _ehlo_reply(self, tls: bool) -> str:
        extensions = self.extensions
        if tls and self.extensions_after_tls is not None:
            extensions = self.extensions_after_tls
        elif tls:
            extensions = [line for line in extensions if line.upper() != "STARTTLS"]
        return (
            "\n".join(["250-scripted.test", *extensions])
            if extensions
            else "250 scripted.test"
        )

    async def _auth(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        argument: str,
        state: dict[str, Any],
    ) -> str | Delay | Raw | None:
        if "AUTH" in self.replies:
            return self._scripted("AUTH", argument, "535 5.7.8 Authentication failed")
        if self.auth_echo:
            return await self._echo_auth(reader, writer, argument)
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if mechanism == "PLAIN":
            if not initial:
                writer.write(b"334 \r\n")
                initial = (await reader.readline()).decode().strip()
            _authzid, login, password = base64.b64decode(initial).decode().split("\0")
        elif mechanism == "LOGIN":
            if not initial:
                writer.write(b"334 VXNlcm5hbWU6\r\n")
                initial = (await reader.readline()).decode().strip()
            login = base64.b64decode(initial).decode()
            writer.write(b"334 UGFzc3dvcmQ6\r\n")
            password = base64.b64decode(
                (await reader.readline()).decode().strip()
            ).decode()
        else:
            return "504 5.7.4 Unrecognized authentication type"
        expected = self.users.get(login)
        if expected is not None and hmac.compare_digest(expected, password):
            state["login"] = login
            return "235 2.7.0 Authentication successful"
        return "535 5.7.8 Authentication credentials invalid"

    async def _echo_auth(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, argument: str
    ) -> str:
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        lines = [initial] if initial else []
        if mechanism == "LOGIN":
            prompts = (
                [b"UGFzc3dvcmQ6"] if initial else [b"VXNlcm5hbWU6", b"UGFzc3dvcmQ6"]
            )
        elif mechanism == "CRAM-MD5":
            prompts = [base64.b64encode(b"<1896.697170952@scripted.test>")]
        else:
            prompts = [] if initial else [b""]
        for prompt in prompts:
            writer.write(b"334 " + prompt + b"\r\n")
            await writer.drain()
            answer = (await reader.readline()).decode().strip()
            self.commands.append(answer)
            lines.append(answer)
        self.auth_lines.extend(lines)
        decoded = [base64.b64decode(line).decode("utf-8", "replace") for line in lines]
        return (
            f"535 5.7.8 Authentication failed for AUTH {mechanism} "
            f"{' '.join(lines)} (decoded: {' | '.join(decoded)})"
        )


def _format(reply: str) -> bytes:
    """Render ``"250-first\nsecond"`` or ``"250 one line"`` as wire lines."""
    lines = reply.split("\n")
    code = lines[0][:3]
    texts = []
    for line in lines:
        if line[:3] == code and line[3:4] in ("-", " ", ""):
            line = line[4:]
        texts.append(line)
    wire = [
        f"{code}{'-' if index < len(texts) - 1 else ' '}{text}".rstrip()
        for index, text in enumerate(texts)
    ]
    return ("\r\n".join(wire) + "\r\n").encode("utf-8")


async def _read_data(reader: asyncio.StreamReader) -> bytes | None:
    """Return the message content, or None if the client hung up before "."."""
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            # Without the final ".", a server must not accept the message.
            return None
        if line == b".\r\n":
            break
        if line.startswith(b".."):
            line = line[1:]
        lines.append(line)
    return b"".join(lines)
