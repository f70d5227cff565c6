"""Find out what an SMTP server offers on each port, without sending mail.

For each port the probe connects, reads the greeting, sends EHLO, tries
STARTTLS and EHLO again, then QUIT. A port that sends no greeting gets a
second connection that starts with a TLS handshake (implicit TLS). The probe
sends no credentials and no MAIL, RCPT or DATA command. Ports run in
parallel, each within its own time limit, so a closed or black-holed port
costs at most that limit.

A port that offers STARTTLS but whose TLS does not come up (the command is
refused or the handshake fails) is reported unusable with error kind
``tls``, never as a port without TLS: an on-path attacker can break the
handshake on purpose so that a client falls back to plain text.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from postroom.smtp.certificate import parse_certificate
from postroom.smtp.replies import is_standard_reply_code, printable
from postroom.smtp.settings import address_literal, machine_fqdn
from postroom.smtp.tls import client_context

log = logging.getLogger("postroom.probe")

DEFAULT_PORTS = (25, 465, 587, 2525)
# RFC 5321 (4.5.3.1.5) limits a reply line to 512 octets. A longer line, or
# a reply of more lines than this, is not from a server worth using.
_MAX_LINE = 2048
_MAX_REPLY_LINES = 100
_REPLY_LINE = re.compile(r"^(\d{3})([ -])(.*)$")


class NotSmtpError(Exception):
    """The peer sent something that is not an SMTP reply."""


class ProtocolError(Exception):
    """The peer speaks SMTP but breaks its rules: a reply line or reply too long."""


@dataclass
class TlsReport:
    """The TLS session a port offered and the certificate it showed."""

    # "starttls" or "tls" (implicit TLS).
    mode: str
    version: str | None = None
    cipher: str | None = None
    # Subject, issuer, names and validity, read without trusting it.
    certificate: dict[str, Any] | None = None
    # Whether the certificate verified against the system store or ca_bundle
    # for the host name probed.
    trusted: bool = False
    verify_error: str | None = None


@dataclass
class PortReport:
    """The offer of one port, or the reason it could not be used."""

    port: int
    reachable: bool = False
    error: str | None = None
    # refused, timeout, network, dns, not_smtp, protocol, rejected, tls or
    # internal (a bug in the probe, logged with its traceback).
    error_kind: str | None = None
    greeting: str | None = None
    implicit_tls: bool = False
    starttls_offered: bool = False
    tls: TlsReport | None = None
    # EHLO keywords on the plain connection and after TLS.
    extensions_before_tls: list[str] = field(default_factory=list)
    extensions_after_tls: list[str] = field(default_factory=list)
    auth_before_tls: list[str] = field(default_factory=list)
    auth_after_tls: list[str] = field(default_factory=list)
    size_limit: int | None = None
    notes: list[str] = field(default_factory=list)
    duration_ms: float = 0.0
    # What the probe was doing, for the message when time runs out.
    stage: str = field(default="connecting", repr=False)

    @property
    def usable(self) -> bool:
        return self.reachable and self.error is None and self.greeting is not None

    @property
    def security(self) -> str:
        if self.tls is None:
            return "none"
        return self.tls.mode

    @property
    def auth_offered(self) -> list[str]:
        """The mechanisms offered where a session would log in."""
        return self.auth_after_tls if self.tls is not None else self.auth_before_tls

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("stage")
        data["usable"] = self.usable
        data["security"] = self.security if self.usable else None
        data["duration_ms"] = round(self.duration_ms, 1)
        return data


@dataclass
class ProbeReport:
    host: str
    ports: list[PortReport]
    addresses: list[str] = field(default_factory=list)
    error: str | None = None
    duration_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "addresses": self.addresses,
            "error": self.error,
            "duration_ms": round(self.duration_ms, 1),
            "ports": [report.as_dict() for report in self.ports],
        }


@dataclass(frozen=True)
class ProbeSettings:
    host: str
    ports: tuple[int, ...] = DEFAULT_PORTS
    # Seconds for each port, and for the whole probe.
    port_timeout: float = 10.0
    total_timeout: float = 30.0
    ca_bundle: str | None = None
    # None: this machine's fully qualified name, else the connection's
    # address literal, as a session would send.
    ehlo_name: str | None = None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _Conversation:
    """One connection speaking just enough SMTP to read what is offered."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        # Lines of the reply being read, so a reply cut short by a timeout
        # can be told from one that never began.
        self.partial_lines = 0

    async def reply(self) -> tuple[int, list[str]]:
        lines: list[str] = []
        self.partial_lines = 0
        while len(lines) < _MAX_REPLY_LINES:
            try:
                raw = await self.reader.readline()
            except ValueError as exc:
                # StreamReader raises ValueError for a line over its limit.
                raise ProtocolError(
                    f"the server sent a reply line longer than {_MAX_LINE} bytes "
                    "(RFC 5321 allows 512)"
                ) from exc
            if not raw:
                raise ConnectionError("the server closed the connection")
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            match = _REPLY_LINE.match(text)
            if match is None:
                raise NotSmtpError(repr(raw[:60]))
            lines.append(printable(match.group(3)))
            self.partial_lines = len(lines)
            if match.group(2) == " ":
                self.partial_lines = 0
                code = int(match.group(1))
                if not is_standard_reply_code(code):
                    raise ProtocolError(
                        f"the server replied with code {code}, which is not an SMTP "
                        "reply code: those start with 2, 3, 4 or 5"
                    )
                return code, lines
        raise ProtocolError(
            f"the server sent a reply of more than {_MAX_REPLY_LINES} lines"
        )

    async def command(self, line: str) -> tuple[int, list[str]]:
        self.writer.write(line.encode("ascii") + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def ehlo(self, name: str | None) -> list[str] | None:
        """Send EHLO (HELO when refused); return the keyword lines or None."""
        if name is None:
            local = self.writer.get_extra_info("sockname")
            name = machine_fqdn() or address_literal(str(local[0]))
        code, lines = await self.command(f"EHLO {name}")
        if code == 250:
            return lines[1:]
        code, _lines = await self.command(f"HELO {name}")
        return [] if code == 250 else None

    async def quit(self) -> None:
        try:
            async with asyncio.timeout(1.0):
                await self.command("QUIT")
        except (OSError, TimeoutError, NotSmtpError, ProtocolError, ConnectionError):
            pass

    def close(self) -> None:
        self.writer.close()


def _read_extensions(report: PortReport, lines: list[str], after_tls: bool) -> None:
    keywords = [line.strip() for line in lines if line.strip()]
    auth: list[str] = []
    for line in keywords:
        parts = line.replace("=", " ").split()
        verb = parts[0].upper()
        if verb == "AUTH":
            auth.extend(name.upper() for name in parts[1:] if name.upper() not in auth)
        elif verb == "SIZE" and len(parts) > 1 and parts[1].isdigit():
            limit = int(parts[1])
            report.size_limit = limit if limit > 0 else None
        elif verb == "STARTTLS" and not after_tls:
            report.starttls_offered = True
    if after_tls:
        report.extensions_after_tls = keywords
        report.auth_after_tls = auth
    else:
        report.extensions_before_tls = keywords
        report.auth_before_tls = auth


def _note_tls(
    report: PortReport,
    writer: asyncio.StreamWriter,
    mode: str,
    verify_error: str | None,
) -> None:
    ssl_object = writer.get_extra_info("ssl_object")
    tls = TlsReport(mode=mode, trusted=verify_error is None, verify_error=verify_error)
    if ssl_object is not None:
        tls.version = ssl_object.version()
        cipher = ssl_object.cipher()
        tls.cipher = cipher[0] if cipher else None
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            certificate = parse_certificate(der)
            tls.certificate = certificate.as_dict()
            tls.certificate["expired"] = certificate.not_after < datetime.now(UTC)
    report.tls = tls


class _Prober:
    def __init__(self, settings: ProbeSettings, addresses: list[str]) -> None:
        self.settings = settings
        self.addresses = addresses
        self.host = settings.host
        self.verifying = client_context(settings.ca_bundle)

    def _server_hostname(self, verify: bool) -> str | None:
        # Verification needs the name to check; without it, SNI must not
        # carry an IP address (RFC 6066, 3).
        if verify:
            return self.host
        return None if _is_ip(self.host) else self.host

    async def _open(
        self, port: int, context: ssl.SSLContext | None, verify: bool = True
    ) -> _Conversation:
        last_error: OSError | None = None
        for address in self.addresses:
            try:
                reader, writer = await asyncio.open_connection(
                    address,
                    port,
                    ssl=context,
                    server_hostname=self._server_hostname(verify) if context else None,
                    limit=_MAX_LINE,
                )
            except ssl.SSLError:
                raise
            except OSError as exc:
                last_error = exc
                continue
            return _Conversation(reader, writer)
        raise last_error or OSError(f"no address for {self.host}")

    async def probe(self, report: PortReport) -> None:
        port = report.port
        report.stage = "connecting"
        try:
            conversation = await self._open(port, None)
        except ConnectionRefusedError:
            report.error = f"connection refused on port {port}: nothing listens there"
            report.error_kind = "refused"
            return
        except OSError as exc:
            report.error = f"cannot connect to port {port}: {exc}"
            report.error_kind = "network"
            return
        report.reachable = True

        try:
            greeted = await self._greeting(report, conversation)
            if greeted:
                await self._plain_session(report, conversation)
                return
        finally:
            conversation.close()
        if report.error is None:
            await self._implicit_tls(report)

    async def _greeting(self, report: PortReport, conversation: _Conversation) -> bool:
        """Read the greeting; return False when none came (silence or garbage)."""
        report.stage = "waiting for the greeting"
        # Half the port's time: a silent port still needs time for the
        # implicit TLS attempt.
        wait = self.settings.port_timeout / 2
        try:
            async with asyncio.timeout(wait):
                code, lines = await conversation.reply()
        except TimeoutError:
            if conversation.partial_lines:
                # A port that waits for a TLS handshake sends nothing, so
                # there is no implicit TLS to look for.
                report.error = (
                    f"the greeting never ended: {conversation.partial_lines} lines "
                    f"of a multi-line reply arrived but no last line within {wait:g} s"
                )
                report.error_kind = "protocol"
                return True
            report.notes.append(f"no greeting within {wait:g} s")
            return False
        except NotSmtpError as exc:
            report.notes.append(f"sent something that is not an SMTP greeting: {exc}")
            return False
        except ConnectionError:
            report.notes.append("closed the connection without a greeting")
            return False
        report.greeting = f"{code} {' '.join(lines)}".strip()
        if code != 220:
            report.error = f"the server rejected the session: {report.greeting}"
            report.error_kind = "rejected"
            await conversation.quit()
            return True
        return True

    async def _plain_session(
        self, report: PortReport, conversation: _Conversation
    ) -> None:
        if report.error is not None:
            return
        report.stage = "sending EHLO"
        lines = await conversation.ehlo(self.settings.ehlo_name)
        if lines is None:
            report.error = "the server rejected EHLO and HELO"
            report.error_kind = "rejected"
            await conversation.quit()
            return
        _read_extensions(report, lines, after_tls=False)
        if not report.starttls_offered:
            await conversation.quit()
            return

        report.stage = "starting TLS (STARTTLS)"
        verify_error = await self._starttls(report, conversation, self.verifying)
        if verify_error is not None:
            # Trust failed: look again without verifying, to show the
            # certificate and what the server offers after TLS.
            conversation.close()
            retry = await self._open(report.port, None)
            try:
                await retry.reply()
                await retry.ehlo(self.settings.ehlo_name)
                await self._starttls(report, retry, _unverified_context(), verify_error)
            finally:
                retry.close()
        else:
            await conversation.quit()

    async def _starttls(
        self,
        report: PortReport,
        conversation: _Conversation,
        context: ssl.SSLContext,
        earlier_verify_error: str | None = None,
    ) -> str | None:
        """Run STARTTLS and EHLO; return the verification error to retry on.

        When TLS does not come up, the port is marked unusable: a session
        configured without TLS would be exactly the downgrade an attacker
        who breaks the handshake wants.
        """
        code, lines = await conversation.command("STARTTLS")
        if code != 220:
            report.error = (
                f"the server offers STARTTLS but refused it: {code} {' '.join(lines)}"
            )
            report.error_kind = "tls"
            return None
        verify = earlier_verify_error is None
        try:
            await conversation.writer.start_tls(
                context, server_hostname=self._server_hostname(verify)
            )
        except ssl.SSLCertVerificationError as exc:
            return str(exc.verify_message or exc)
        except (ssl.SSLError, ConnectionError) as exc:
            report.error = (
                "the server offers STARTTLS and replied 220, but the TLS handshake "
                f"failed: {handshake_error(exc)}"
            )
            report.error_kind = "tls"
            return None
        _note_tls(report, conversation.writer, "starttls", earlier_verify_error)
        report.stage = "sending EHLO after TLS"
        after = await conversation.ehlo(self.settings.ehlo_name)
        if after is not None:
            _read_extensions(report, after, after_tls=True)
        return None

    async def _implicit_tls(self, report: PortReport) -> None:
        report.stage = "trying implicit TLS"
        verify_error: str | None = None
        try:
            conversation = await self._open(report.port, self.verifying)
        except ssl.SSLCertVerificationError as exc:
            verify_error = str(exc.verify_message or exc)
            conversation = await self._open(report.port, _unverified_context(), False)
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            report.error = (
                f"port {report.port} sent no SMTP greeting and no TLS handshake "
                f"succeeded ({exc})"
            )
            report.error_kind = "not_smtp"
            return
        try:
            report.implicit_tls = True
            _note_tls(report, conversation.writer, "tls", verify_error)
            report.stage = "waiting for the greeting after TLS"
            code, lines = await conversation.reply()
            report.greeting = f"{code} {' '.join(lines)}".strip()
            if code != 220:
                report.error = f"the server rejected the session: {report.greeting}"
                report.error_kind = "rejected"
                return
            report.stage = "sending EHLO after TLS"
            after = await conversation.ehlo(self.settings.ehlo_name)
            if after is None:
                report.error = "the server rejected EHLO and HELO"
                report.error_kind = "rejected"
                return
            _read_extensions(report, after, after_tls=True)
            await conversation.quit()
        except (NotSmtpError, ConnectionError, ssl.SSLError) as exc:
            report.error = f"the TLS session on port {report.port} failed: {exc}"
            report.error_kind = "tls"
        finally:
            conversation.close()


async def _probe_port(prober: _Prober, report: PortReport) -> None:
    started = time.perf_counter()
    timeout = prober.settings.port_timeout
    try:
        async with asyncio.timeout(timeout):
            await prober.probe(report)
    except TimeoutError:
        report.error = f"timed out after {timeout:g} s while {report.stage}"
        report.error_kind = "timeout"
    except ProtocolError as exc:
        report.error = f"failed while {report.stage}: {exc}"
        report.error_kind = "protocol"
    except (NotSmtpError, ConnectionError, ssl.SSLError, OSError) as exc:
        report.error = f"failed while {report.stage}: {exc}"
        report.error_kind = "not_smtp" if isinstance(exc, NotSmtpError) else "network"
    finally:
        report.duration_ms = (time.perf_counter() - started) * 1000


def handshake_error(exc: BaseException) -> str:
    """Describe a failed TLS handshake; some of these errors carry no message."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if str(exc):
        return str(exc)
    if isinstance(exc, ConnectionResetError):
        return "the server reset the connection (ConnectionResetError)"
    if isinstance(exc, ConnectionAbortedError):
        return "the connection was aborted (ConnectionAbortedError)"
    return type(exc).__name__


async def _resolve(host: str, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _kind, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def probe_server(settings: ProbeSettings) -> ProbeReport:
    """Probe every port of ``settings`` in parallel within the time limits."""
    started = time.perf_counter()
    reports = [PortReport(port) for port in settings.ports]
    report = ProbeReport(host=settings.host, ports=reports)
    try:
        report.addresses = await _resolve(settings.host, settings.port_timeout)
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
        report.error = f"the host name {settings.host!r} does not resolve: {reason}"
        for port_report in reports:
            port_report.error = "not probed: the host name does not resolve"
            port_report.error_kind = "dns"
        report.duration_ms = (time.perf_counter() - started) * 1000
        return report

    prober = _Prober(settings, report.addresses)
    tasks = [
        asyncio.create_task(_probe_port(prober, port_report)) for port_report in reports
    ]
    _done, pending = await asyncio.wait(tasks, timeout=settings.total_timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for port_report, task in zip(reports, tasks, strict=True):
        if task in pending:
            port_report.error = (
                f"not finished within the probe's total time of "
                f"{settings.total_timeout:g} s (while {port_report.stage})"
            )
            port_report.error_kind = "timeout"
            continue
        failure = task.exception()
        if failure is not None:
            # A server behaviour the probe does not handle: the port is
            # reported as failed rather than with a half-filled report.
            log.error(
                "probe of a port failed",
                exc_info=failure,
                extra={"host": settings.host, "port": port_report.port},
            )
            port_report.error = (
                f"the probe failed while {port_report.stage}: "
                f"{type(failure).__name__}: {failure}"
            )
            port_report.error_kind = "internal"
    report.duration_ms = (time.perf_counter() - started) * 1000
    return report
