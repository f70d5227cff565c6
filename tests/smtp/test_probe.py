"""The probe against local servers offering different combinations.

Servers: plain only, STARTTLS with AUTH only after TLS, implicit TLS, no
AUTH at all, a rejecting greeting, a silent non-TLS port, a closed port and
a black-holed port. Every test passes explicit loopback ports.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest

from postroom.devserver.sink import SinkServer
from postroom.diagnosis.probe import (
    ProbeResult,
    check_probe_request,
    choose_mechanism,
    run_probe,
)
from postroom.errors import InvalidInputError
from tests.peers.blackhole import black_hole, closed_port
from tests.peers.certs import Certificates
from tests.peers.scripted import DROP, HANG, Raw, ScriptedServer

PASSWORD = "Probe-Secret-77"
MESSAGE_VERBS = ("AUTH", "MAIL", "RCPT", "DATA")


def probe(host: str, ports: list[int], **options: Any) -> ProbeResult:
    options.setdefault("port_timeout", 2.0)
    options.setdefault("total_timeout", 10.0)
    request = check_probe_request(host, ports, **options)
    return asyncio.run(run_probe(request))


def by_port(result: ProbeResult) -> dict[int, dict[str, Any]]:
    return {port["port"]: port for port in result.as_dict()["ports"]}


def sent_verbs(server: ScriptedServer) -> set[str]:
    return {command.split(" ")[0].upper() for command in server.commands}


@pytest.fixture
def starttls_server(
    start_scripted: Callable[..., ScriptedServer],
) -> ScriptedServer:
    """A submission port: STARTTLS, and AUTH only after TLS."""
    return start_scripted(
        tls=True,
        extensions=["PIPELINING", "SIZE 35882577", "STARTTLS"],
        extensions_after_tls=["PIPELINING", "SIZE 35882577", "AUTH LOGIN PLAIN"],
    )


def test_plain_only_server(start_scripted: Callable[..., ScriptedServer]) -> None:
    server = start_scripted(extensions=["SIZE 1000000", "AUTH CRAM-MD5 LOGIN PLAIN"])

    result = probe("127.0.0.1", [server.port])

    port = by_port(result)[server.port]
    assert port["usable"] is True
    assert port["greeting"] == "220 scripted.test ESMTP ready"
    assert port["starttls_offered"] is False
    assert port["implicit_tls"] is False
    assert port["tls"] is None
    assert port["auth_before_tls"] == ["CRAM-MD5", "LOGIN", "PLAIN"]
    assert port["size_limit"] == 1000000
    recommendation = result.recommendation
    assert recommendation is not None
    assert recommendation.security == "none"
    # Without TLS, CRAM-MD5 keeps the password off the wire.
    assert recommendation.mechanism == "CRAM-MD5"
    assert any("no port offers TLS" in warning for warning in recommendation.warnings)
    assert sent_verbs(server) == {"EHLO", "QUIT"}


def test_starttls_with_auth_after_tls(
    starttls_server: ScriptedServer, certificates: Certificates
) -> None:
    result = probe(
        "localhost", [starttls_server.port], ca_bundle=str(certificates.ca_file)
    )

    port = by_port(result)[starttls_server.port]
    assert port["starttls_offered"] is True
    assert port["auth_before_tls"] == []
    assert port["auth_after_tls"] == ["LOGIN", "PLAIN"]
    assert port["tls"]["mode"] == "starttls"
    assert port["tls"]["trusted"] is True
    assert port["tls"]["version"].startswith("TLS")
    assert port["tls"]["certificate"]["names"] == ["localhost", "127.0.0.1", "::1"]
    assert port["tls"]["certificate"]["expired"] is False
    assert "trustme" in port["tls"]["certificate"]["issuer"]
    assert port["size_limit"] == 35882577
    recommendation = result.recommendation
    assert recommendation is not None
    assert recommendation.port == starttls_server.port
    assert recommendation.security == "starttls"
    assert recommendation.mechanism == "UserPassword"
    assert recommendation.warnings == []
    assert sent_verbs(starttls_server) == {"EHLO", "STARTTLS", "QUIT"}


def test_implicit_tls_port(
    start_sink: Callable[..., SinkServer], certificates: Certificates
) -> None:
    server = start_sink("tls", users={"alice": PASSWORD})

    result = probe("localhost", [server.port], ca_bundle=str(certificates.ca_file))

    port = by_port(result)[server.port]
    assert port["implicit_tls"] is True
    assert port["tls"]["mode"] == "tls"
    assert port["tls"]["trusted"] is True
    assert "LOGIN" in port["auth_after_tls"]
    assert port["notes"][0].startswith("no greeting within")
    assert result.recommendation is not None
    assert result.recommendation.security == "tls"
    assert not server.handler.messages


def test_server_without_auth(start_scripted: Callable[..., ScriptedServer]) -> None:
    server = start_scripted(extensions=["SIZE 10485760", "8BITMIME"])

    result = probe("127.0.0.1", [server.port])

    recommendation = result.recommendation
    assert recommendation is not None
    assert recommendation.mechanism is None
    assert any("offers no AUTH" in warning for warning in recommendation.warnings)


def test_untrusted_certificate_still_reported(
    start_scripted: Callable[..., ScriptedServer], certificates: Certificates
) -> None:
    server = start_scripted(
        tls_context=certificates.self_signed.server_context(),
        extensions_after_tls=["AUTH PLAIN"],
    )

    result = probe("localhost", [server.port], ca_bundle=str(certificates.ca_file))

    port = by_port(result)[server.port]
    assert port["tls"]["trusted"] is False
    assert "self-signed" in port["tls"]["verify_error"]
    assert port["tls"]["certificate"]["self_signed"] is True
    assert port["auth_after_tls"] == ["PLAIN"]
    recommendation = result.recommendation
    assert recommendation is not None
    assert any("set ca_bundle" in warning for warning in recommendation.warnings)


def test_mixed_ports_recommend_tls_with_auth(
    start_scripted: Callable[..., ScriptedServer],
    starttls_server: ScriptedServer,
    certificates: Certificates,
) -> None:
    plain = start_scripted(extensions=["AUTH PLAIN LOGIN"])
    no_auth_tls = start_scripted(tls=True, extensions_after_tls=["SIZE 100"])
    refused = closed_port()

    with black_hole() as hole:
        result = probe(
            "localhost",
            [refused, hole, plain.port, no_auth_tls.port, starttls_server.port],
            ca_bundle=str(certificates.ca_file),
            port_timeout=1.0,
        )

    ports = by_port(result)
    assert ports[refused]["error_kind"] == "refused"
    assert ports[refused]["usable"] is False
    assert ports[hole]["error_kind"] == "timeout"
    assert "while connecting" in ports[hole]["error"]
    assert ports[plain.port]["usable"] is True
    assert ports[no_auth_tls.port]["usable"] is True
    recommendation = result.recommendation
    assert recommendation is not None
    assert recommendation.port == starttls_server.port
    assert recommendation.security == "starttls"
    assert recommendation.mechanism == "UserPassword"


def test_total_time_limit_ends_slow_ports(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    # No STARTTLS: this server cannot start TLS, which would make it unusable.
    server = start_scripted(extensions=["SIZE 10485760"])

    with black_hole() as first, black_hole() as second:
        result = probe(
            "127.0.0.1",
            [first, second, server.port],
            port_timeout=30.0,
            total_timeout=1.0,
        )

    ports = by_port(result)
    for hole in (first, second):
        assert ports[hole]["error_kind"] == "timeout"
        assert "total time of 1 s" in ports[hole]["error"]
    assert ports[server.port]["usable"] is True
    assert result.recommendation is not None
    assert result.recommendation.port == server.port


def test_rejecting_greeting(start_scripted: Callable[..., ScriptedServer]) -> None:
    server = start_scripted(greeting="554 5.7.1 Access denied for 127.0.0.1")

    result = probe("127.0.0.1", [server.port])

    port = by_port(result)[server.port]
    assert port["reachable"] is True
    assert port["usable"] is False
    assert port["error_kind"] == "rejected"
    assert port["greeting"] == "554 5.7.1 Access denied for 127.0.0.1"
    assert result.recommendation is None


def test_silent_port_without_tls(start_scripted: Callable[..., ScriptedServer]) -> None:
    server = start_scripted(greeting=HANG)

    result = probe("127.0.0.1", [server.port], port_timeout=1.0)

    port = by_port(result)[server.port]
    assert port["reachable"] is True
    assert port["usable"] is False
    assert port["error_kind"] == "timeout"
    assert "while trying implicit TLS" in port["error"]
    assert port["notes"] == ["no greeting within 0.5 s"]
    assert result.recommendation is None


def test_unresolvable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # The machine's resolver is another host, so its failure is imitated.
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)

    result = probe("smtp.example.invalid", [587, 465])

    data = result.as_dict()
    assert "does not resolve" in data["error"]
    assert [port["error_kind"] for port in data["ports"]] == ["dns", "dns"]
    assert result.recommendation is None


def test_login_test_on_recommended_port(
    start_sink: Callable[..., SinkServer], certificates: Certificates
) -> None:
    server = start_sink("starttls", users={"alice": PASSWORD})

    result = probe(
        "localhost",
        [server.port],
        ca_bundle=str(certificates.ca_file),
        login="alice",
        password=PASSWORD,
    )

    assert result.login is not None
    assert result.login.ok is True
    assert result.login.mechanism == "UserPassword"
    assert PASSWORD not in repr(result.as_dict())
    assert not server.handler.messages


def test_failed_login_is_diagnosed(
    start_sink: Callable[..., SinkServer], certificates: Certificates
) -> None:
    server = start_sink("starttls", users={"alice": "the-right-one"})

    result = probe(
        "localhost",
        [server.port],
        ca_bundle=str(certificates.ca_file),
        login="alice",
        password=PASSWORD,
    )

    assert result.login is not None
    assert result.login.ok is False
    assert result.login.diagnosis is not None
    assert result.login.diagnosis["id"] == "auth-credentials-rejected"
    assert PASSWORD not in repr(result.as_dict())
    assert not server.handler.messages


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"ports": [0]}, "ports"),
        ({"ports": list(range(1000, 1020))}, "ports"),
        ({"port_timeout": 0}, "timeout"),
        ({"total_timeout": 1000}, "total_timeout"),
        ({"login": "alice"}, "password"),
        ({"password": "x"}, "login"),
        ({"mechanism": "Telepathy"}, "mechanism"),
        ({"ca_bundle": "/no/such/file.pem"}, "ca_bundle"),
    ],
)
def test_invalid_request_names_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        check_probe_request("smtp.example.com", **options)

    assert raised.value.field == field


def test_invalid_host_names_field() -> None:
    with pytest.raises(InvalidInputError) as raised:
        check_probe_request("smtp://example.com:587")

    assert raised.value.field == "host"


def test_default_ports() -> None:
    request = check_probe_request("smtp.example.com")

    assert request.ports == (25, 465, 587, 2525)


@pytest.mark.parametrize(
    ("offered", "encrypted", "expected"),
    [
        (["PLAIN", "LOGIN"], True, "UserPassword"),
        (["CRAM-MD5", "PLAIN"], True, "UserPassword"),
        (["CRAM-MD5", "PLAIN"], False, "CRAM-MD5"),
        (["XOAUTH2"], True, "XOAUTH2"),
        (["NTLM", "GSSAPI"], True, "NTLM"),
        (["GSSAPI"], True, "Kerberos"),
        ([], True, None),
    ],
)
def test_choose_mechanism(
    offered: list[str], encrypted: bool, expected: str | None
) -> None:
    assert choose_mechanism(offered, encrypted) == expected


@pytest.mark.parametrize(
    ("offered", "mechanism"),
    [("NTLM", "NTLM"), ("GSSAPI", "Kerberos"), ("XOAUTH2", "XOAUTH2")],
)
def test_enterprise_mechanisms_reported(
    start_scripted: Callable[..., ScriptedServer], offered: str, mechanism: str
) -> None:
    server = start_scripted(
        tls=True,
        extensions=["STARTTLS"],
        extensions_after_tls=[f"AUTH {offered}"],
    )

    result = probe("localhost", [server.port], ca_bundle=None)

    port = by_port(result)[server.port]
    assert offered in port["auth_after_tls"]
    assert result.recommendation is not None
    assert result.recommendation.mechanism == mechanism
    assert "AUTH" not in sent_verbs(server)


# TLS that is offered but does not come up, as an on-path attacker can arrange:
# the port must not turn into a plain-text recommendation.
BROKEN_TLS = Raw(
    b"220 2.0.0 Ready to start TLS\r\n\x16\x03\x01\x00\x10garbage-not-tls", then=DROP
)


def test_failed_starttls_handshake_is_unusable(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(
        extensions=["STARTTLS", "AUTH PLAIN LOGIN"], replies={"STARTTLS": BROKEN_TLS}
    )

    result = probe("127.0.0.1", [server.port], login="alice", password=PASSWORD)

    port = by_port(result)[server.port]
    assert port["starttls_offered"] is True
    assert port["usable"] is False
    assert port["security"] is None
    assert port["error_kind"] == "tls"
    # The reset arrives with or without the kernel's message, depending on
    # when the server's close lands; either way the error names it.
    handshake_error = port["error"].partition("TLS handshake failed: ")[2]
    assert "reset" in handshake_error.lower()
    assert result.recommendation is None
    assert result.login is None
    assert "AUTH" not in sent_verbs(server)


def test_refused_starttls_is_unusable(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(
        extensions=["STARTTLS", "AUTH PLAIN"],
        replies={"STARTTLS": "454 4.7.0 TLS not available due to local problem"},
    )

    result = probe("127.0.0.1", [server.port])

    port = by_port(result)[server.port]
    assert port["usable"] is False
    assert port["error_kind"] == "tls"
    assert "454 4.7.0 TLS not available" in port["error"]
    assert result.recommendation is None


def test_plaintext_login_needs_explicit_permission(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    broken = start_scripted(
        extensions=["STARTTLS", "AUTH PLAIN LOGIN"], replies={"STARTTLS": BROKEN_TLS}
    )
    plain = start_scripted(extensions=["AUTH PLAIN LOGIN"], users={"alice": PASSWORD})

    result = probe(
        "127.0.0.1", [broken.port, plain.port], login="alice", password=PASSWORD
    )

    recommendation = result.recommendation
    assert recommendation is not None
    assert recommendation.port == plain.port
    assert recommendation.security == "none"
    assert any(
        f"port {broken.port} offers TLS but it failed" in warning
        for warning in recommendation.warnings
    )
    assert result.login is not None
    assert result.login.tested is False
    assert result.login.ok is False
    assert result.login.diagnosis is not None
    assert result.login.diagnosis["id"] == "login-not-tested-without-tls"
    assert "AUTH" not in sent_verbs(plain)
    assert "AUTH" not in sent_verbs(broken)


def test_plaintext_login_with_permission(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    broken = start_scripted(
        extensions=["STARTTLS", "AUTH PLAIN LOGIN"], replies={"STARTTLS": BROKEN_TLS}
    )
    plain = start_scripted(extensions=["AUTH PLAIN LOGIN"], users={"alice": PASSWORD})

    result = probe(
        "127.0.0.1",
        [broken.port, plain.port],
        login="alice",
        password=PASSWORD,
        allow_plaintext=True,
    )

    assert result.login is not None
    assert result.login.tested is True
    assert result.login.ok is True
    assert result.login.port == plain.port
    assert "AUTH" in sent_verbs(plain)
    assert "AUTH" not in sent_verbs(broken)


def test_long_greeting_line_is_protocol_error(
    start_scripted: Callable[..., ScriptedServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_scripted(greeting=Raw(b"220 " + b"x" * 5000, then=HANG))

    result = probe("127.0.0.1", [server.port])

    port = by_port(result)[server.port]
    assert port["reachable"] is True
    assert port["usable"] is False
    assert port["error_kind"] == "protocol"
    assert "longer than 2048 bytes" in port["error"]
    assert "waiting for the greeting" in port["error"]
    assert "never retrieved" not in caplog.text


def test_long_ehlo_line_is_protocol_error(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(replies={"EHLO": "250-scripted.test\n250 " + "A" * 3000})

    result = probe("127.0.0.1", [server.port])

    port = by_port(result)[server.port]
    assert port["error_kind"] == "protocol"
    assert "longer than 2048 bytes" in port["error"]
    assert "sending EHLO" in port["error"]


def test_unfinished_greeting_is_protocol_error(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(greeting=Raw(b"220-still greeting\r\n" * 3, then=HANG))

    result = probe("127.0.0.1", [server.port], port_timeout=1.0)

    port = by_port(result)[server.port]
    assert port["error_kind"] == "protocol"
    assert "the greeting never ended: 3 lines" in port["error"]
    assert port["implicit_tls"] is False


def test_login_not_sent_when_starttls_appears(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    # No STARTTLS while probing, STARTTLS on the login test's connection: the
    # offer changed in between, so the password stays unsent.
    server = start_scripted(
        users={"alice": PASSWORD},
        replies={
            "EHLO": [
                "250-scripted.test\nAUTH PLAIN LOGIN",
                "250-scripted.test\nSTARTTLS\nAUTH PLAIN LOGIN",
            ]
        },
    )

    result = probe(
        "127.0.0.1",
        [server.port],
        login="alice",
        password=PASSWORD,
        allow_plaintext=True,
    )

    assert result.login is not None
    assert result.login.tested is False
    assert result.login.ok is False
    assert result.login.diagnosis is not None
    assert result.login.diagnosis["id"] == "starttls-offered-at-login"
    assert "AUTH" not in sent_verbs(server)


def test_nonstandard_reply_code_is_protocol_error(
    start_scripted: Callable[..., ScriptedServer],
) -> None:
    server = start_scripted(greeting="999 weird")

    result = probe("127.0.0.1", [server.port])

    port = by_port(result)[server.port]
    assert port["usable"] is False
    assert port["error_kind"] == "protocol"
    assert "code 999, which is not an SMTP reply code" in port["error"]
