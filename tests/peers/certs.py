"""Certificates for TLS tests, issued by a throwaway CA (trustme)."""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class ServerCertificate:
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@dataclass
class Certificates:
    ca: trustme.CA
    # PEM file of the CA, for a profile's ca_bundle.
    ca_file: Path
    localhost: ServerCertificate
    # Valid, but issued for another name than the one the client dials.
    other_name: ServerCertificate
    expired: ServerCertificate
    # Issued by a CA the client does not trust.
    untrusted: ServerCertificate
    untrusted_ca_file: Path
    # Signed by its own key, as appliances and test relays ship them.
    self_signed: ServerCertificate
    # Valid only from tomorrow, as after a clock or issuance mistake.
    not_yet_valid: ServerCertificate


def _write(cert: trustme.LeafCert, folder: Path, stem: str) -> ServerCertificate:
    cert_file = folder / f"{stem}.pem"
    key_file = folder / f"{stem}.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    return ServerCertificate(cert_file, key_file)


def _self_signed(folder: Path, stem: str) -> ServerCertificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file = folder / f"{stem}.pem"
    key_file = folder / f"{stem}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ServerCertificate(cert_file, key_file)


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue_cert(
        "localhost",
        "127.0.0.1",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    not_yet_valid = ca.issue_cert(
        "localhost",
        "127.0.0.1",
        not_before=now + datetime.timedelta(days=1),
        not_after=now + datetime.timedelta(days=30),
    )
    other_ca = trustme.CA()
    untrusted_ca_file = folder / "other-ca.pem"
    other_ca.cert_pem.write_to_path(str(untrusted_ca_file))
    return Certificates(
        ca=ca,
        ca_file=ca_file,
        localhost=_write(
            ca.issue_cert("localhost", "127.0.0.1", "::1"), folder, "localhost"
        ),
        other_name=_write(ca.issue_cert("mail.other.example"), folder, "other-name"),
        expired=_write(expired, folder, "expired"),
        untrusted=_write(
            other_ca.issue_cert("localhost", "127.0.0.1"), folder, "untrusted"
        ),
        untrusted_ca_file=untrusted_ca_file,
        self_signed=_self_signed(folder, "self-signed"),
        not_yet_valid=_write(not_yet_valid, folder, "not-yet-valid"),
    )
