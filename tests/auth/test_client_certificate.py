"""TLS client certificates against relays that require one."""

from __future__ import annotations

import glob
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text

from postroom.devserver.sink import SinkHandler, SinkServer
from postroom.errors import InvalidInputError
from postroom.runtime import Runtime
from tests.auth.helpers import add_profile, drain, queue, test_email, view
from tests.peers.certs import Certificates


@dataclass
class ClientIdentity:
    certificate: str
    key: str


@dataclass
class CertificateSink(SinkHandler):
    """Stores messages with the subject of the client certificate they came with."""

    subjects: list[str] = field(default_factory=list)

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        certificate = server.transport.get_extra_info("peercert") or {}
        subject = dict(item[0] for item in certificate.get("subject", ()))
        self.subjects.append(subject.get("commonName", ""))
        return await super().handle_DATA(server, session, envelope)


def identity(ca: trustme.CA, name: str) -> ClientIdentity:
    leaf = ca.issue_cert(name, common_name=name)
    return ClientIdentity(
        certificate="".join(pem.bytes().decode() for pem in leaf.cert_chain_pems),
        key=leaf.private_key_pem.bytes().decode(),
    )


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    """The CA the relay trusts for client certificates."""
    return trustme.CA()


@pytest.fixture
def start_relay(
    certificates: Certificates, client_ca: trustme.CA
) -> Iterator[Callable[..., SinkServer]]:
    started: list[SinkServer] = []

    def start(security: str = "starttls") -> SinkServer:
        context = certificates.localhost.server_context()
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca.cert_pem.bytes().decode())
        server = SinkServer(
            CertificateSink(),
            port=0,
            tls_context=context,
            implicit_tls=security == "tls",
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def relay_profile(
    runtime: Runtime,
    server: SinkServer,
    certificates: Certificates,
    security: str = "starttls",
    **changes: Any,
) -> None:
    add_profile(
        runtime,
        server.port,
        host="localhost",
        security=security,
        ca_bundle=str(certificates.ca_file),
        **changes,
    )


def subjects(server: SinkServer) -> list[str]:
    assert isinstance(server.handler, CertificateSink)
    return server.handler.subjects


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_relay_accepts_client_certificate(
    runtime: Runtime,
    start_relay: Callable[..., SinkServer],
    certificates: Certificates,
    client_ca: trustme.CA,
    security: str,
) -> None:
    server = start_relay(security)
    sender = identity(client_ca, "orders-sender.example")
    relay_profile(
        runtime,
        server,
        certificates,
        security,
        client_certificate=sender.certificate,
        client_key=sender.key,
    )

    result = test_email(runtime)

    assert result.ok, result.cause
    assert subjects(server) == ["orders-sender.example"]
    # The key went through a private file that is gone again.
    assert glob.glob("/dev/shm/postroom-identity-*") == []


def test_missing_client_certificate_diagnosed(
    runtime: Runtime, start_relay: Callable[..., SinkServer], certificates: Certificates
) -> None:
    server = start_relay()
    relay_profile(runtime, server, certificates)

    result = test_email(runtime)

    assert not result.ok
    assert result.diagnosis == "client-certificate-required"
    assert result.setting == "client_certificate"
    assert server.handler.messages == []


def test_untrusted_client_certificate_diagnosed(
    runtime: Runtime, start_relay: Callable[..., SinkServer], certificates: Certificates
) -> None:
    server = start_relay()
    stranger = identity(trustme.CA(), "stranger.example")
    relay_profile(
        runtime,
        server,
        certificates,
        client_certificate=stranger.certificate,
        client_key=stranger.key,
    )

    result = test_email(runtime)

    assert not result.ok
    assert result.diagnosis == "client-certificate-rejected"
    assert server.handler.messages == []


def test_worker_delivers_with_client_certificate(
    runtime: Runtime,
    start_relay: Callable[..., SinkServer],
    certificates: Certificates,
    client_ca: trustme.CA,
) -> None:
    server = start_relay()
    sender = identity(client_ca, "orders-sender.example")
    relay_profile(
        runtime,
        server,
        certificates,
        client_certificate=sender.certificate,
        client_key=sender.key,
    )
    message_pk = queue(runtime)

    assert drain(runtime) == 1

    assert view(runtime, message_pk)["status"] == "sent"
    assert subjects(server) == ["orders-sender.example"]


def test_client_key_stored_encrypted(
    runtime: Runtime, certificates: Certificates, client_ca: trustme.CA
) -> None:
    sender = identity(client_ca, "orders-sender.example")
    add_profile(
        runtime,
        2525,
        host="localhost",
        security="starttls",
        client_certificate=sender.certificate,
        client_key=sender.key,
    )

    with runtime.engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT client_certificate_encrypted, client_key_encrypted "
                "FROM profiles WHERE name = 'Orders'"
            )
        ).one()
    assert b"PRIVATE KEY" not in row[1]
    assert b"CERTIFICATE" not in row[0]
    assert runtime.secrets.decrypt(row[1]) == sender.key.strip()


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"client_certificate": "not a certificate"}, "client_certificate"),
        ({"client_key": "-----BEGIN PRIVATE KEY-----\nxx\n"}, "client_key"),
        ({"security": "none"}, "security"),
        ({"other_key": True}, "client_key"),
        ({"client_key": None}, "client_key"),
    ],
)
def test_invalid_client_identity_refused(
    runtime: Runtime,
    client_ca: trustme.CA,
    changes: dict[str, Any],
    field_name: str,
) -> None:
    sender = identity(client_ca, "orders-sender.example")
    values: dict[str, Any] = {
        "host": "localhost",
        "security": "starttls",
        "client_certificate": sender.certificate,
        "client_key": sender.key,
    }
    if changes.pop("other_key", False):
        values["client_key"] = identity(client_ca, "other.example").key
    values.update(changes)
    if values.get("client_key") is None:
        values.pop("client_key")

    with pytest.raises(InvalidInputError) as raised:
        add_profile(runtime, 2525, **values)

    assert raised.value.field == field_name
