"""Test emails and their diagnosis, each against a server that fails that way."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest

from postroom.devserver.sink import SinkServer
from postroom.diagnosis.testmail import TestEmailResult, send_test_email
from postroom.smtp.settings import ConnectionSettings
from tests.peers.blackhole import black_hole, closed_port
from tests.peers.certs import Certificates
from tests.peers.scripted import ScriptedServer

USERS = {"alice": "s3cret-Passw0rd"}


def run_test(host: str, port: int, security: str, **overrides: Any) -> TestEmailResult:
    values: dict[str, Any] = {
        "host": host,
        "port": port,
        "security": security,
        "connect_timeout": 2.0,
        "command_timeout": 2.0,
    }
    values.update(overrides)
    settings = ConnectionSettings(**values)
    return asyncio.run(
        send_test_email("Test", settings, "orders@example.com", "bob@example.com")
    )


def test_accepted_test_email_reports_reply(
    start_sink: Callable[..., SinkServer], certificates: Certificates
) -> None:
    server = start_sink("starttls", users=USERS)

    result = run_test(
        "localhost",
        server.port,
        "starttls",
        login="alice",
        password=USERS["alice"],
        ca_bundle=str(certificates.ca_file),
    )

    assert result.ok
    assert result.step is None
    assert result.reply_code == 250
    assert result.queue_id == server.handler.messages[0].id
    assert list(result.timings) == [
        "connect",
        "greeting",
        "ehlo",
        "starttls",
        "auth",
        "mail_from",
        "rcpt_to",
        "data",
    ]
    assert server.handler.messages[0].headers["Subject"] == "Postroom test email: Test"


def test_starttls_required(start_scripted: Callable[..., ScriptedServer]) -> None:
    server = start_scripted(
        replies={"MAIL": "530 5.7.0 Must issue a STARTTLS command first"}
    )

    result = run_test("127.0.0.1", server.port, "none")

    assert not result.ok
    assert result.step == "mail_from"
    assert result.reply_code == 530
    assert result.enhanced_status == "5.7.0"
    assert result.reply_text == "5.7.0 Must issue a STARTTLS command first"
    assert result.diagnosis == "starttls-required"
    assert result.setting == "security"
    assert "Set security to STARTTLS" in (result.fix or "")


def test_starttls_required_before_auth(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(
        extensions=["AUTH PLAIN LOGIN", "STARTTLS"],
        replies={"AUTH": "530 5.7.0 Must issue a STARTTLS command first"},
    )

    result = run_test("127.0.0.1", server.port, "none", login="alice", password="x")

    assert result.step == "auth"
    assert result.diagnosis == "starttls-required"
    assert result.setting == "security"


def test_unrecognized_authentication_type(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(
        extensions=["AUTH LOGIN CRAM-MD5"],
        replies={"AUTH": "504 5.7.4 Unrecognized authentication type"},
    )

    result = run_test("127.0.0.1", server.port, "none", login="alice", password="x")

    assert result.step == "auth"
    assert result.reply_code == 504
    assert result.enhanced_status == "5.7.4"
    assert result.diagnosis == "auth-mechanism-rejected"
    assert result.setting == "mechanism"
    assert "LOGIN, CRAM-MD5" in (result.fix or "")


def test_mechanism_not_offered_lists_offered(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(extensions=["AUTH LOGIN PLAIN"])

    result = run_test(
        "127.0.0.1",
        server.port,
        "none",
        login="alice",
        password="x",
        mechanism="CRAM-MD5",
    )

    assert result.step == "auth"
    assert result.reply_code is None
    assert result.diagnosis == "auth-not-offered"
    assert "LOGIN, PLAIN" in (result.fix or "")
    assert "CRAM-MD5" in (result.cause or "")
    assert not any(command.startswith("AUTH") for command in server.commands)


def test_credentials_rejected(
    start_sink: Callable[..., SinkServer], certificates: Certificates
) -> None:
    server = start_sink("starttls", users=USERS)

    result = run_test(
        "localhost",
        server.port,
        "starttls",
        login="alice",
        password="wrong",
        ca_bundle=str(certificates.ca_file),
    )

    assert result.step == "auth"
    assert result.reply_code == 535
    assert result.diagnosis == "auth-credentials-rejected"
    assert result.setting == "password"
    assert "app password" in (result.fix or "")
    assert not server.handler.messages


def test_connection_timeout_names_port() -> None:
    with black_hole() as port:
        result = run_test("127.0.0.1", port, "starttls", connect_timeout=0.5)

    assert result.step == "connect"
    assert result.diagnosis == "connection-timeout"
    assert result.transient is True
    assert "587" in (result.fix or "")
    assert "firewall" in (result.fix or "")


def test_connection_refused() -> None:
    result = run_test("127.0.0.1", closed_port(), "starttls")

    assert result.step == "connect"
    assert result.diagnosis == "connection-refused"
    assert "587" in (result.fix or "")


def test_unknown_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # The machine's resolver is another host, so its failure is imitated
    # instead of sending it a made-up name.
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)

    result = run_test("no-such-host.invalid", 587, "starttls")

    assert result.step == "connect"
    assert result.diagnosis == "dns-not-found"
    assert result.setting == "host"


def test_implicit_tls_on_starttls_port(
    start_sink: Callable[..., SinkServer], certificates: Certificates
) -> None:
    server = start_sink("starttls")

    result = run_test(
        "localhost", server.port, "tls", ca_bundle=str(certificates.ca_file)
    )

    assert result.step == "connect"
    assert result.diagnosis == "tls-on-plain-port"
    assert result.setting == "security"
    assert "STARTTLS" in (result.fix or "")


def test_starttls_on_implicit_tls_port(
    start_sink: Callable[..., SinkServer], certificates: Certificates
) -> None:
    server = start_sink("tls")

    result = run_test(
        "localhost",
        server.port,
        "starttls",
        ca_bundle=str(certificates.ca_file),
        connect_timeout=1.0,
    )

    assert result.step == "greeting"
    assert result.diagnosis == "plain-on-tls-port"
    assert result.facts["implicit_tls_works"] is True
    assert result.setting == "security"
    assert "Set security to TLS" in (result.fix or "")


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_certificate_not_trusted(
    start_sink: Callable[..., SinkServer], security: str
) -> None:
    server = start_sink(security)

    # No ca_bundle: the test CA is not in the system store.
    result = run_test("localhost", server.port, security)

    assert result.step == ("starttls" if security == "starttls" else "connect")
    assert result.diagnosis == "certificate-untrusted"
    assert result.setting == "ca_bundle"
    assert not server.handler.messages


def test_certificate_for_another_name(
    start_scripted: Callable[..., ScriptedServer], certificates: Certificates
) -> None:
    server = start_scripted(tls_context=certificates.other_name.server_context())

    result = run_test(
        "localhost", server.port, "starttls", ca_bundle=str(certificates.ca_file)
    )

    assert result.step == "starttls"
    assert result.diagnosis == "certificate-hostname-mismatch"
    assert result.setting == "host"
    assert "mail.other.example" in (result.fix or "")


def test_certificate_expired(
    start_scripted: Callable[..., ScriptedServer], certificates: Certificates
) -> None:
    server = start_scripted(tls_context=certificates.expired.server_context())

    result = run_test(
        "localhost", server.port, "starttls", ca_bundle=str(certificates.ca_file)
    )

    assert result.step == "starttls"
    assert result.diagnosis == "certificate-expired"
    assert result.setting == "provider"


def test_recipient_refused_is_a_failure(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(
        replies={"RCPT": "550 5.1.1 <bob@example.com>: user unknown"}
    )

    result = run_test("127.0.0.1", server.port, "none")

    assert not result.ok
    assert result.step == "rcpt_to"
    assert result.reply_code == 550
    assert result.enhanced_status == "5.1.1"
    assert not any(command == "DATA" for command in server.commands)


def test_failed_test_keeps_password_out_of_result(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    password = "Hunter2-very-secret"
    server = start_scripted(
        extensions=["AUTH PLAIN LOGIN"],
        replies={"AUTH": f"535 5.7.8 bad password {password}"},
    )

    result = run_test(
        "127.0.0.1", server.port, "none", login="alice", password=password
    )

    assert result.step == "auth"
    rendered = repr(result.as_dict())
    assert "Hunter2" not in "\n".join(result.transcript)
    assert password not in (result.cause or "")
    assert server.commands  # the server saw the exchange; the result does not show it
    assert "[secret hidden]" in "\n".join(result.transcript)
    assert password not in rendered


def test_dropped_greeting_names_the_port(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    from tests.peers.scripted import DROP

    server = start_scripted(greeting=DROP)

    result = run_test("127.0.0.1", server.port, "none")

    assert result.step == "greeting"
    assert f"on port {server.port}" in (result.reply_text or "")
    assert "port None" not in (result.reply_text or "")


def test_ca_bundle_removed_after_saving(
    start_sink: Callable[..., SinkServer], tmp_path: Any, certificates: Certificates
) -> None:
    server = start_sink("starttls")
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(certificates.ca_file.read_bytes())
    bundle.unlink()

    result = run_test("localhost", server.port, "starttls", ca_bundle=str(bundle))

    assert not result.ok
    assert result.step == "connect"
    assert result.diagnosis == "ca-bundle-unusable"
    assert result.setting == "ca_bundle"
    assert not server.handler.messages
