"""Read a server's TLS certificate without trusting it, to explain failures.

Used only after verification has failed (or by the probe), so an operator
can see whom the certificate names and when it expires. Nothing is sent
over these connections but EHLO and STARTTLS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    issuer: str
    names: list[str]
    not_before: datetime
    not_after: datetime
    self_signed: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "names": self.names,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "self_signed": self.self_signed,
        }


def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def parse_certificate(der: bytes) -> CertificateInfo:
    certificate = x509.load_der_x509_certificate(der)
    names: list[str] = []
    try:
        san = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        names.extend(san.get_values_for_type(x509.DNSName))
        names.extend(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        names.extend(str(attribute.value) for attribute in common_names)
    return CertificateInfo(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        names=names,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        self_signed=certificate.issuer == certificate.subject,
    )


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, list[str]]:
    lines = []
    while True:
        line = (await reader.readline()).decode("utf-8", "replace").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit():
            raise ConnectionError(f"not an SMTP reply: {line[:80]!r}")
        lines.append(line[4:])
        if line[3:4] != "-":
            return int(line[:3]), lines


async def _fetch(host: str, port: int, security: str, ehlo_name: str) -> bytes | None:
    context = _unverified_context()
    server_hostname = None if _is_ip(host) else host
    if security == "tls":
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=server_hostname or ""
        )
    else:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            await _read_reply(reader)
            writer.write(f"EHLO {ehlo_name}\r\n".encode())
            await _read_reply(reader)
            writer.write(b"STARTTLS\r\n")
            code, _ = await _read_reply(reader)
            if code != 220:
                return None
            await writer.start_tls(context, server_hostname=server_hostname)
        except BaseException:
            writer.close()
            raise
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return ssl_object.getpeercert(binary_form=True) if ssl_object else None
    finally:
        writer.close()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def fetch_certificate(
    host: str, port: int, security: str, timeout: float, ehlo_name: str = "[127.0.0.1]"
) -> CertificateInfo | None:
    """Return the server's certificate, or None if it cannot be read in time."""
    try:
        async with asyncio.timeout(timeout):
            der = await _fetch(host, port, security, ehlo_name)
    except (OSError, TimeoutError, ssl.SSLError, ConnectionError, ValueError):
        return None
    return parse_certificate(der) if der else None


async def implicit_tls_answers(host: str, port: int, timeout: float) -> bool:
    """Tell whether a TLS handshake succeeds on the port (certificate unchecked)."""
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(
                host,
                port,
                ssl=_unverified_context(),
                server_hostname=None if _is_ip(host) else host,
            )
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    writer.close()
    return True
