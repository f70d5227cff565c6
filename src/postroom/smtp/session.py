"""One SMTP session: open (connect, greeting, EHLO, STARTTLS, AUTH), send, close.

Every failure is raised as SmtpFailure naming the step where it happened,
with the server's reply when there was one. The class is built on aiosmtplib
and adds the step bookkeeping, timings and a transcript without secrets.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiosmtplib

from postroom.smtp import sasl
from postroom.smtp.errors import ErrorKind, SmtpFailure, Step
from postroom.smtp.reader import ReplyReader
from postroom.smtp.recording import RecordingSMTP
from postroom.smtp.replies import Reply, printable, printable_reply
from postroom.smtp.settings import ConnectionSettings, address_literal, machine_fqdn
from postroom.smtp.tls import client_context, client_context_with_identity
from postroom.smtp.transcript import Transcript, mask_secrets, secret_forms

# RFC 5321, 4.5.2: a line that starts with a period gets a second one.
_LEADING_PERIOD = re.compile(rb"(?m)^\.")
# Any CR or LF that is not part of a CRLF pair. Bare ones are what SMTP
# smuggling relies on, so the body is normalized before it goes out.
_BARE_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_NOT_IN_PATH = re.compile(r"[\s<>\x00-\x1f\x7f]")


def _path(address: str, encoding: str) -> bytes:
    """Return the reverse-path or forward-path of MAIL or RCPT: <address>."""
    if _NOT_IN_PATH.search(address):
        # Addresses are checked when a message is queued. This check keeps
        # an unchecked one from adding ESMTP parameters to the command.
        raise SmtpFailure(
            step=Step.MAIL_FROM,
            kind=ErrorKind.PROTOCOL,
            error=f"the address {printable(address)!r} contains a space, an angle "
            "bracket or a control character, which an SMTP path cannot hold",
        )
    return b"<" + address.encode(encoding) + b">"


def encode_data(message: bytes) -> bytes:
    """Return the DATA payload: CRLF line ends, dot-stuffed, with the final dot."""
    # Built messages already end their lines with CRLF and rarely start one
    # with a period. Counting is much faster than a substitution that
    # changes nothing, and a worker encodes every message it sends.
    line_ends = message.count(b"\r\n")
    if message.count(b"\r") != line_ends or message.count(b"\n") != line_ends:
        message = _BARE_LINE_BREAK.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b".") or b"\n." in message:
        message = _LEADING_PERIOD.sub(b"..", message)
    return message + b".\r\n"


@dataclass
class SendResult:
    """The outcome of one mail transaction, per recipient."""

    mail_from: Reply
    accepted: dict[str, Reply] = field(default_factory=dict)
    # Refused at RCPT TO, each with its own reply.
    refused: dict[str, Reply] = field(default_factory=dict)
    # The final reply to DATA; None when every recipient was refused.
    data: Reply | None = None


@dataclass(frozen=True)
class MailTransaction:
    """A mail transaction to run: the envelope, the message and its options."""

    sender: str
    recipients: tuple[str, ...]
    message: bytes
    smtputf8: bool = False


@dataclass
class _Announced:
    """A transaction whose MAIL, RCPT and DATA went out ahead of its send()."""

    transaction: MailTransaction
    reader: ReplyReader
    mail: bytes
    rcpts: list[bytes]


class _StepContext:
    """One step of a session: its time is added to the session's timings,
    and an error raised in it leaves as an SmtpFailure naming the step.

    A class rather than a generator-based context manager: a delivery runs
    several steps per message, and entering and leaving a class costs about
    a third as much (measured with timeit).
    """

    __slots__ = ("_session", "_started", "_step")

    def __init__(self, session: SmtpSession, step: Step) -> None:
        self._session = session
        self._step = step
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        exc: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        timings = self._session.timings
        step = self._step.value
        elapsed = (time.perf_counter() - self._started) * 1000
        timings[step] = timings.get(step, 0.0) + elapsed
        # A cancellation is not a failure of the step, so it propagates unchanged.
        if isinstance(exc, Exception):
            raise self._session._failure(self._step, exc) from exc


def _root_causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify(step: Step, exc: BaseException) -> SmtpFailure:
    """Turn an exception raised during ``step`` into an SmtpFailure."""
    if isinstance(exc, SmtpFailure):
        return exc

    chain = list(_root_causes(exc))
    message = str(exc) or type(exc).__name__

    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return SmtpFailure(
                step=step,
                kind=ErrorKind.CERTIFICATE,
                error=cause.verify_message or str(cause),
                details={"verify_code": cause.verify_code},
            )
    for cause in chain:
        if isinstance(cause, ssl.SSLError):
            return SmtpFailure(
                step=step,
                kind=ErrorKind.TLS,
                error=cause.reason or str(cause),
                details={"ssl_error": str(cause)},
            )

    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code < 0:
            # aiosmtplib reports a reply it cannot parse with code -1, and
            # quotes the line with its CRLF.
            return SmtpFailure(
                step=step, kind=ErrorKind.PROTOCOL, error=exc.message.strip()
            )
        return SmtpFailure(
            step=step, kind=ErrorKind.REPLY, reply_code=exc.code, reply_text=exc.message
        )

    for cause in chain:
        if isinstance(cause, socket.gaierror):
            return SmtpFailure(step=step, kind=ErrorKind.DNS, error=str(cause))
        if isinstance(cause, ConnectionRefusedError):
            return SmtpFailure(step=step, kind=ErrorKind.REFUSED, error=str(cause))
    for cause in chain:
        if isinstance(cause, TimeoutError | asyncio.TimeoutError):
            return SmtpFailure(step=step, kind=ErrorKind.TIMEOUT, error=message)
        if isinstance(cause, aiosmtplib.SMTPServerDisconnected | ConnectionResetError):
            return SmtpFailure(step=step, kind=ErrorKind.DISCONNECTED, error=message)
    if isinstance(exc, OSError | aiosmtplib.SMTPException):
        return SmtpFailure(step=step, kind=ErrorKind.NETWORK, error=message)
    raise exc


class SmtpSession:
    """An SMTP connection to one server, walked step by step."""

    @classmethod
    def for_delivery(cls, settings: ConnectionSettings) -> SmtpSession:
        """Return a session for the delivery engine, pipelining where it can."""
        return cls(settings, pipelining=True)

    def __init__(
        self,
        settings: ConnectionSettings,
        transcript: Transcript | None = None,
        *,
        pipelining: bool = False,
    ) -> None:
        self.settings = settings
        self.transcript = transcript
        # Use PIPELINING where the server offers it. Deliveries do; a test
        # email does not, so its transcript shows each reply under its
        # command and stops at the first refusal.
        self.pipelining = pipelining
        # A server may echo what it was sent in its reply text; every reply
        # and error leaving this class is masked with these.
        self._secrets = [
            form for secret in settings.secrets for form in secret_forms(secret)
        ]
        if transcript is not None:
            for secret in settings.secrets:
                transcript.add_secret(secret)
        # Milliseconds each step took, in the order they ran.
        self.timings: dict[str, float] = {}
        self.greeting: Reply | None = None
        self.tls_version: str | None = None
        self.peer_certificate: dict[str, Any] | None = None
        self.authenticated = False
        self._client: RecordingSMTP | None = None
        # A transaction writes to the transport past aiosmtplib's command
        # lock, so close() takes this lock before it sends QUIT.
        self._transaction = asyncio.Lock()
        # MAIL, RCPT and DATA of the next transaction, written right after the
        # last one's final "." (RFC 2920 allows a group to start with message
        # content). Its replies are read by the next send().
        self._announced: _Announced | None = None

    def _step(self, step: Step) -> _StepContext:
        """Time a step and turn any error in it into an SmtpFailure naming it."""
        return _StepContext(self, step)

    def _failure(self, step: Step, exc: Exception) -> SmtpFailure:
        failure = classify(step, exc)
        if failure.kind in (
            ErrorKind.TLS,
            ErrorKind.CERTIFICATE,
            ErrorKind.DISCONNECTED,
        ):
            failure.details.setdefault(
                "client_certificate", bool(self.settings.client_certificate)
            )
        # The server's words are stored and shown: secrets it echoed are
        # masked, and control characters escaped so they cannot forge or
        # overwrite lines.
        if failure.reply_text:
            failure.reply_text = printable_reply(
                mask_secrets(failure.reply_text, self._secrets)
            )
        if failure.error:
            # aiosmtplib is handed a connected socket, so its own messages
            # cannot know the port; fill it in.
            error = failure.error.replace(
                "on port None", f"on port {self.settings.port}"
            )
            failure.error = printable(mask_secrets(error, self._secrets))
        if self.transcript is not None:
            if failure.reply_code is None:
                self.transcript.event(f"failed: {failure.error}")
            elif step == Step.GREETING:
                # aiosmtplib reads the greeting outside execute_command, so
                # the recording client has not seen it.
                self.transcript.server(failure.reply_code, failure.reply_text or "")
        return failure

    def _add_secret(self, secret: str) -> None:
        self._secrets.extend(secret_forms(secret))
        if self.transcript is not None:
            self.transcript.add_secret(secret)

    def _tls_context(self) -> ssl.SSLContext | None:
        settings = self.settings
        if settings.security == "none":
            return None
        if settings.client_certificate and settings.client_key:
            with self._step(Step.CONNECT):
                return client_context_with_identity(
                    settings.ca_bundle, settings.client_certificate, settings.client_key
                )
        try:
            return client_context(settings.ca_bundle)
        except (ssl.SSLError, OSError) as exc:
            # The file was valid when saved but has since been removed or
            # replaced; no connection is attempted with a broken trust store.
            raise SmtpFailure(
                step=Step.CONNECT,
                kind=ErrorKind.CONFIGURATION,
                error=f"cannot load the CA bundle {settings.ca_bundle}: {exc}",
                details={"ca_bundle": settings.ca_bundle},
            ) from exc

    def _reply(self, code: int, text: str) -> Reply:
        if self._secrets:
            text = mask_secrets(text, self._secrets)
        return Reply(code, printable_reply(text))

    @property
    def client(self) -> RecordingSMTP:
        if self._client is None:
            raise SmtpFailure(
                step=Step.CONNECT,
                kind=ErrorKind.DISCONNECTED,
                error="the session is not connected",
            )
        return self._client

    @property
    def is_connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    @property
    def announced(self) -> MailTransaction | None:
        """The transaction whose commands went out ahead of its send(), if any."""
        return self._announced.transaction if self._announced is not None else None

    @property
    def extensions(self) -> dict[str, str]:
        return dict(self._client.esmtp_extensions) if self._client else {}

    @property
    def offered_mechanisms(self) -> list[str]:
        if self._client is None:
            return []
        return [name.upper() for name in self._client.server_auth_methods]

    @property
    def size_limit(self) -> int | None:
        # Read for every message sent, so the extensions are not copied.
        value = self._client.esmtp_extensions.get("size", "") if self._client else ""
        return int(value) if value.isdigit() and int(value) > 0 else None

    async def open(self, *, authenticate: bool = True) -> None:
        """Connect and walk the dialogue up to an authenticated session.

        With ``authenticate`` false the session stops after EHLO (and
        STARTTLS), so the caller can look at the offer before calling
        ``authenticate()``.
        """
        settings = self.settings
        tls_context = self._tls_context()
        sock = await self._connect()

        use_tls = settings.security == "tls"
        client = RecordingSMTP(
            hostname=settings.host,
            sock=sock,
            use_tls=use_tls,
            start_tls=False,
            tls_context=tls_context,
            timeout=settings.command_timeout,
            local_hostname=self._ehlo_name(sock),
        )
        client.transcript = self.transcript
        client.on_secret = self._add_secret
        client.login_name = settings.login
        if use_tls and self.transcript is not None:
            self.transcript.event("TLS handshake (implicit TLS)")

        try:
            with self._step(Step.GREETING):
                try:
                    response = await client.connect(timeout=settings.connect_timeout)
                except aiosmtplib.SMTPConnectTimeoutError as exc:
                    unfinished = self._unfinished_greeting(client)
                    if unfinished is None:
                        raise
                    raise unfinished from exc
        except SmtpFailure as failure:
            sock.close()
            # With implicit TLS the handshake happens before the greeting, as
            # part of connecting; report it there.
            if use_tls and failure.kind in (ErrorKind.TLS, ErrorKind.CERTIFICATE):
                failure.step = Step.CONNECT
            raise
        except BaseException:
            sock.close()
            raise
        self._client = client
        self.greeting = self._reply(response.code, response.message)
        if self.transcript is not None:
            self.transcript.server(response.code, response.message)
        if use_tls:
            self._note_tls()

        await self._ehlo()
        if settings.security == "starttls":
            await self._starttls()
            try:
                await self._ehlo()
            except SmtpFailure as failure:
                failure.details["after_starttls"] = True
                raise
        if authenticate:
            await self.authenticate()

    async def authenticate(self) -> None:
        """Log in with the profile's mechanism; without a login, do nothing."""
        if not self.settings.login:
            return
        with self._step(Step.AUTH):
            await sasl.authenticate(self.client, self.settings)
        self.authenticated = True

    def _unfinished_greeting(self, client: RecordingSMTP) -> SmtpFailure | None:
        """Explain a greeting that began but did not end before the timeout."""
        data = client.unfinished_reply
        if not data:
            return None
        lines = data.split(b"\n")
        first = lines[0].decode("utf-8", "replace").rstrip("\r")[:100]
        complete = len(lines) - 1
        if self.transcript is not None:
            self.transcript.event(
                f"received {complete} lines and {len(lines[-1])} more bytes of a "
                f"greeting that did not end; the first line: {first}"
            )
        timeout = self.settings.connect_timeout
        if not (first[:3].isdigit() and first[3:4] == "-"):
            return SmtpFailure(
                step=Step.GREETING,
                kind=ErrorKind.PROTOCOL,
                error=f"the server sent {len(data)} bytes that are not a complete "
                f"SMTP greeting within {timeout:g} s: {first!r}",
            )
        return SmtpFailure(
            step=Step.GREETING,
            kind=ErrorKind.TIMEOUT,
            error=f"the server sent {complete} lines of a multi-line greeting "
            f"({first!r}) but no last line within {timeout:g} s",
            details={"unfinished_greeting_lines": complete},
        )

    async def _connect(self) -> socket.socket:
        settings = self.settings
        loop = asyncio.get_running_loop()
        if self.transcript is not None:
            self.transcript.event(f"connecting to {settings.host} port {settings.port}")
        with self._step(Step.CONNECT):
            deadline = loop.time() + settings.connect_timeout
            async with asyncio.timeout(settings.connect_timeout):
                infos = await loop.getaddrinfo(
                    settings.host, settings.port, type=socket.SOCK_STREAM
                )
            last_error: OSError | None = None
            for family, kind, proto, _name, address in infos:
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                try:
                    async with asyncio.timeout_at(deadline):
                        await loop.sock_connect(sock, address)
                except OSError as exc:
                    sock.close()
                    last_error = exc
                    continue
                except BaseException:
                    sock.close()
                    raise
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.transcript is not None:
                    self.transcript.event(
                        f"connected to {address[0]!s} port {address[1]!s}"
                    )
                return sock
            raise last_error or OSError(f"no address found for {settings.host}")

    def _ehlo_name(self, sock: socket.socket) -> str:
        if self.settings.ehlo_name:
            return self.settings.ehlo_name
        fqdn = machine_fqdn()
        if fqdn:
            return fqdn
        return address_literal(sock.getsockname()[0])

    def _note_tls(self) -> None:
        ssl_object = self.client.get_transport_info("ssl_object")
        if ssl_object is None:
            return
        self.tls_version = ssl_object.version()
        self.peer_certificate = ssl_object.getpeercert() or None
        if self.transcript is not None:
            self.transcript.event(f"TLS established ({self.tls_version})")

    async def _ehlo(self) -> None:
        with self._step(Step.EHLO):
            try:
                await self.client.ehlo()
            except aiosmtplib.SMTPHeloError:
                # A server that does not know EHLO gets HELO (RFC 5321, 3.2).
                if not self.client.is_connected:
                    raise
                await self.client.helo()

    async def _starttls(self) -> None:
        client = self.client
        with self._step(Step.STARTTLS):
            if not client.supports_extension("starttls"):
                raise SmtpFailure(
                    step=Step.STARTTLS,
                    kind=ErrorKind.NOT_OFFERED,
                    error="the server does not offer STARTTLS",
                    details={"extensions": sorted(client.esmtp_extensions)},
                )
            if self.transcript is not None:
                self.transcript.client(b"STARTTLS")
            with self._recording_starttls_reply(client):
                await client.starttls(timeout=self.settings.connect_timeout)
        self._note_tls()

    @contextmanager
    def _recording_starttls_reply(self, client: RecordingSMTP) -> Iterator[None]:
        """Copy the reply to STARTTLS to the transcript as soon as it arrives.

        aiosmtplib's starttls() sends the command, reads the reply and starts
        the handshake in one call, which returns nothing when the handshake
        fails. The server's 220 belongs in the transcript all the same: it
        shows the server agreed before TLS broke.
        """
        protocol = client.protocol
        transcript = self.transcript
        if protocol is None or transcript is None:
            yield
            return
        read_response = protocol.read_response

        async def recorded(timeout: float | None = None) -> aiosmtplib.SMTPResponse:
            response = await read_response(timeout=timeout)
            transcript.server(response.code, response.message)
            return response

        # An instance attribute shadows the method for this one call.
        # NOTE: this relies on aiosmtplib's starttls() reading the reply with
        # protocol.read_response, as version 5.1 does.
        protocol.read_response = recorded  # type: ignore[method-assign]
        try:
            yield
        finally:
            with suppress(AttributeError):
                del protocol.read_response

    async def send(
        self,
        envelope_sender: str,
        recipients: Sequence[str],
        message: bytes,
        *,
        smtputf8: bool = False,
        before_end_of_data: Awaitable[object] | None = None,
        then: MailTransaction | None = None,
    ) -> SendResult:
        """Run one mail transaction; refused recipients do not stop the others.

        Raises SmtpFailure when MAIL FROM or DATA fails. When every recipient
        is refused, no message content is sent and ``SendResult.data`` stays
        None. One transaction runs at a time, and close() waits for it.
        ``before_end_of_data`` is awaited after the message body and before
        the final "." that asks the server to accept it.

        With ``then``, where the server offers PIPELINING, the MAIL, RCPT and
        DATA commands of that next transaction go out together with this
        message's final ".", saving a write and a round trip. The next call
        must then send exactly that transaction. Unless this transaction
        succeeds, the connection is closed instead, and the next send fails
        at MAIL FROM as on a connection the server closed while idle.
        """
        try:
            async with self._transaction:
                return await self._send(
                    MailTransaction(
                        envelope_sender, tuple(recipients), message, smtputf8
                    ),
                    before_end_of_data=before_end_of_data,
                    then=then,
                )
        except SmtpFailure as failure:
            # A "message too large" diagnosis compares the size with the
            # SIZE the server announced in EHLO.
            failure.details.setdefault("size", len(message))
            if self.size_limit is not None:
                failure.details.setdefault("size_limit", self.size_limit)
            raise

    async def _send(
        self,
        transaction: MailTransaction,
        *,
        before_end_of_data: Awaitable[object] | None,
        then: MailTransaction | None,
    ) -> SendResult:
        announced, self._announced = self._announced, None
        if announced is not None:
            # The server is reading another message by now, or a reply to no
            # command arrived and every later reply would be paired with the
            # wrong command. Either way the connection cannot be used, as if
            # the server had closed it while idle.
            unusable = None
            if announced.transaction != transaction:
                unusable = "it had announced another transaction"
            elif announced.reader.has_surplus:
                unusable = "the server sent a reply to no command"
            if unusable is not None:
                self.abort()
                raise SmtpFailure(
                    step=Step.MAIL_FROM,
                    kind=ErrorKind.DISCONNECTED,
                    error=f"the connection was closed because {unusable}",
                )
        if announced is not None:
            reader, mail, rcpts = announced.reader, announced.mail, announced.rcpts
            pipelining = True
        else:
            client = self.client
            with self._step(Step.MAIL_FROM):
                mail, rcpts = self._commands(client, transaction)
                reader = ReplyReader(client)
            # RFC 2920: where the server offers PIPELINING, MAIL, every RCPT
            # and DATA go out in one write, and their replies are read in
            # order. That saves two round trips and as many writes per message.
            pipelining = self.pipelining and client.supports_extension("pipelining")
            reader.attach()
        try:
            result = await self._envelope(
                reader,
                mail,
                rcpts,
                transaction.recipients,
                pipelining=pipelining,
                written=announced is not None,
            )
            if not result.accepted:
                if pipelining:
                    await self._end_refused_data(reader)
            else:
                with self._step(Step.DATA):
                    result.data = await self._data(
                        reader,
                        transaction.message,
                        before_end_of_data,
                        pipelining=pipelining,
                        then=then if pipelining else None,
                    )
        except BaseException:
            # The replies owed to an announced transaction would be read as
            # this one's: the reader closes the connection instead.
            # NOTE: after a failed final reply to DATA the server is ready
            # for the announced transaction, so that connection could be
            # kept. Each rejected message costs a reconnect for now.
            self._announced = None
            reader.detach()
            raise
        if self._announced is None:
            reader.detach()
        if not result.accepted:
            await self.reset()
        return result

    def _commands(
        self, client: RecordingSMTP, transaction: MailTransaction
    ) -> tuple[bytes, list[bytes]]:
        """Return the MAIL FROM and RCPT TO commands of ``transaction``."""
        options, encoding = self._mail_options(
            client, transaction.message, transaction.smtputf8
        )
        mail = b" ".join(
            [b"MAIL FROM:" + _path(transaction.sender, encoding), *options]
        )
        rcpts = [
            b"RCPT TO:" + _path(address, encoding) for address in transaction.recipients
        ]
        return mail, rcpts

    def _mail_options(
        self, client: RecordingSMTP, message: bytes, smtputf8: bool
    ) -> tuple[list[bytes], str]:
        options: list[bytes] = []
        encoding = "ascii"
        if smtputf8:
            if not client.supports_extension("smtputf8"):
                raise SmtpFailure(
                    step=Step.MAIL_FROM,
                    kind=ErrorKind.NOT_OFFERED,
                    error="an address is internationalized but the server does "
                    "not offer SMTPUTF8",
                    details={"extension": "SMTPUTF8"},
                )
            options.append(b"SMTPUTF8")
            encoding = "utf-8"
        limit = self.size_limit
        if limit is not None:
            if len(message) > limit:
                raise SmtpFailure(
                    step=Step.MAIL_FROM,
                    kind=ErrorKind.TOO_LARGE,
                    error=f"the message is {len(message)} bytes but the server "
                    f"accepts at most {limit} bytes (SIZE)",
                    details={"size": len(message), "size_limit": limit},
                )
            options.append(b"SIZE=%d" % len(message))
        if not message.isascii() and client.supports_extension("8bitmime"):
            options.append(b"BODY=8BITMIME")
        return options, encoding

    def _record_commands(self, *commands: bytes) -> None:
        if self.transcript is not None:
            for command in commands:
                self.transcript.client(*command.split(b" "))

    def _record_reply(self, code: int, text: str) -> None:
        if self.transcript is not None:
            self.transcript.server(code, text)

    async def _read(self, reader: ReplyReader) -> tuple[int, str]:
        try:
            code, text = await reader.reply(self.settings.command_timeout)
        except aiosmtplib.SMTPException as exc:
            if self.transcript is not None:
                self.transcript.event(f"no reply: {exc}")
            raise
        self._record_reply(code, text)
        if code == 421:
            # The server is closing the connection, so replies still owed
            # will not arrive.
            self.client.close()
        return code, text

    async def _envelope(
        self,
        reader: ReplyReader,
        mail: bytes,
        rcpts: list[bytes],
        recipients: Sequence[str],
        *,
        pipelining: bool,
        written: bool = False,
    ) -> SendResult:
        """Read (or send and read) MAIL FROM and each RCPT TO.

        ``written``: the commands already went out, announced with the last
        transaction's final ".".
        """
        with self._step(Step.MAIL_FROM):
            if not written:
                group = [mail, *rcpts, b"DATA"] if pipelining else [mail]
                self._record_commands(*group)
                reader.write(*group)
            code, text = await self._read(reader)
            if code != 250:
                await self._skip_replies(reader)
                raise aiosmtplib.SMTPSenderRefused(code, text, "")
        result = SendResult(mail_from=self._reply(code, text))

        with self._step(Step.RCPT_TO):
            for recipient, rcpt in zip(recipients, rcpts, strict=True):
                if not pipelining:
                    self._record_commands(rcpt)
                    reader.write(rcpt)
                code, text = await self._read(reader)
                if code in (250, 251):
                    result.accepted[recipient] = self._reply(code, text)
                    continue
                result.refused[recipient] = self._reply(code, text)
                if code == 421:
                    raise aiosmtplib.SMTPRecipientRefused(code, text, recipient)
        return result

    async def _skip_replies(self, reader: ReplyReader) -> None:
        """Read the replies still owed to pipelined commands, if any."""
        if not self.is_connected:
            return
        with suppress(aiosmtplib.SMTPException):
            while reader.outstanding:
                code, _text = await self._read(reader)
                if code == 354:
                    # DATA accepted against the rules: an empty end leaves
                    # the session ready for RSET.
                    self._record_commands(b".")
                    reader.write(b".")

    async def _end_refused_data(self, reader: ReplyReader) -> None:
        """Finish the pipelined DATA when every recipient was refused.

        The server should reject that DATA too. If it replies 354 anyway, a
        lone "." ends the empty message (RFC 2920, 3.1).
        """
        try:
            with self._step(Step.DATA):
                code, _text = await self._read(reader)
                if code == 354:
                    self._record_commands(b".")
                    reader.write(b".")
                    await self._read(reader)
        except SmtpFailure:
            # The recipients' refusals are the outcome. A session that sent
            # no clean reply to the pipelined DATA is not used again.
            self.abort()

    async def _data(
        self,
        reader: ReplyReader,
        message: bytes,
        before_end: Awaitable[object] | None,
        *,
        pipelining: bool,
        then: MailTransaction | None = None,
    ) -> Reply:
        if not pipelining:
            self._record_commands(b"DATA")
            reader.write(b"DATA")
        code, text = await self._read(reader)
        if code != 354:
            raise aiosmtplib.SMTPDataError(code, text)
        payload = encode_data(message)
        if self.transcript is not None:
            self.transcript.client(f"[message, {len(payload)} bytes]".encode())
        # Counted before writing: a body cut short by an error or a
        # cancellation leaves the session unusable, and the reader closes it.
        reader.outstanding += 1
        try:
            if before_end is None:
                reader.write_raw(payload + self._announce(reader, then))
            else:
                # The payload ends with the line ".\r\n"; until the server
                # reads it, it has not accepted the message.
                reader.write_raw(payload[:-3])
                await before_end
                reader.write_raw(payload[-3:] + self._announce(reader, then))
            code, text = await self._read(reader)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.client.close()
            raise
        if code != 250:
            raise aiosmtplib.SMTPDataError(code, text)
        if self._announced is not None and reader.has_surplus:
            # More replies than commands: those of the announced transaction
            # cannot be identified, so the connection is closed instead.
            self._announced = None
        return self._reply(code, text)

    def _announce(self, reader: ReplyReader, then: MailTransaction | None) -> bytes:
        """Return the commands of ``then`` to write after the final ".".

        A transaction the server would refuse before reading a reply (too
        large for SIZE, an internationalized address without SMTPUTF8) is
        not announced: its own send() reports that failure.
        """
        if then is None:
            return b""
        try:
            mail, rcpts = self._commands(self.client, then)
            group = [mail, *rcpts, b"DATA"]
            commands = reader.encode(*group)
        except (SmtpFailure, ValueError):
            return b""
        self._record_commands(*group)
        reader.outstanding += len(group)
        self._announced = _Announced(then, reader, mail, rcpts)
        return commands

    async def reset(self) -> None:
        """Abort the current transaction (RSET) so the session can be reused."""
        if self._announced is not None:
            # The server is reading the announced message by now, so RSET
            # would become its content.
            self._announced = None
            self.abort()
        if not self.is_connected:
            return
        try:
            await self.client.rset()
        except aiosmtplib.SMTPException:
            self.abort()

    async def close(self) -> None:
        """Say QUIT and close; a server that is already gone is not an error."""
        if self._client is None:
            return
        try:
            async with self._transaction:
                if self._announced is not None:
                    # QUIT would become the announced message's content.
                    self._announced = None
                    return
                if self._client is not None and self._client.is_connected:
                    await self._client.quit(
                        timeout=min(self.settings.command_timeout, 5.0)
                    )
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
