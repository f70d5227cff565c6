"""NTLM against an SMTP server whose acceptor is pyspnego's NTLM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.runtime import Runtime
from postroom.smtp.mechanisms.ntlm import NtlmLogin, split_login
from postroom.smtp.settings import ConnectionSettings
from tests.auth.helpers import add_profile, drain, queue, send_through, view
from tests.peers.auth_smtp import AuthServer
from tests.peers.ntlm import NtlmHandler, write_user_file

USERS = [
    ("CORP", "bob", "Bob-pw-1"),
    ("", "alice", "Alice-pw-1"),
    ("", "carol@corp.example", "Carol-pw-1"),
    # dave exists only in the CORP domain.
    ("CORP", "dave", "Dave-pw-1"),
]


@pytest.fixture
def ntlm_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AuthServer]:
    # pyspnego's acceptor reads the variable at each AUTH, in the server's
    # thread; monkeypatch restores it for the rest of the process.
    monkeypatch.setenv(
        "NTLM_USER_FILE", write_user_file(str(tmp_path / "ntlm-users"), USERS)
    )
    server = AuthServer(NtlmHandler()).start()
    yield server
    server.stop()


def settings(server: AuthServer, login: str, password: str) -> ConnectionSettings:
    return ConnectionSettings(
        host="127.0.0.1",
        port=server.port,
        security="none",
        login=login,
        password=password,
        mechanism="NTLM",
        connect_timeout=5.0,
        command_timeout=5.0,
    )


@pytest.mark.parametrize(
    ("login", "password", "principal"),
    [
        ("CORP\\bob", "Bob-pw-1", "CORP\\bob"),
        ("alice", "Alice-pw-1", "alice"),
        ("carol@corp.example", "Carol-pw-1", "carol@corp.example"),
    ],
)
def test_login_forms_accepted(
    ntlm_server: AuthServer, login: str, password: str, principal: str
) -> None:
    result = send_through(settings(ntlm_server, login, password))

    assert result.ok, result.cause
    handler = ntlm_server.handler
    assert isinstance(handler, NtlmHandler)
    assert handler.principals == [principal]
    assert handler.messages[0].login == principal


def test_exchange_follows_smtp_ntlm_extension(ntlm_server: AuthServer) -> None:
    result = send_through(settings(ntlm_server, "CORP\\bob", "Bob-pw-1"))

    assert result.ok
    auth_lines = [line.split(": ", 1)[1] for line in result.transcript]
    start = auth_lines.index("AUTH NTLM [AUTH data hidden]")
    assert auth_lines[start + 1] == "334 [AUTH data hidden]"
    assert auth_lines[start + 2] == "[AUTH data hidden]"
    assert auth_lines[start + 3].startswith("235 ")
    handler = ntlm_server.handler
    assert isinstance(handler, NtlmHandler)
    # The NEGOTIATE_MESSAGE came as the initial response on the AUTH line.
    assert handler.initial_on_auth_line == [True]


@pytest.mark.parametrize(
    ("login", "password"),
    [("CORP\\bob", "wrong-password"), ("alice", "wrong"), ("mallory", "Alice-pw-1")],
)
def test_rejected_credentials_diagnosed(
    ntlm_server: AuthServer, login: str, password: str
) -> None:
    result = send_through(settings(ntlm_server, login, password))

    assert not result.ok
    assert result.step == "auth"
    assert result.reply_code == 535
    assert result.reply_text == "5.7.3 Authentication unsuccessful"
    assert result.diagnosis == "auth-credentials-rejected"
    assert result.setting == "password"


def test_domain_mismatch_names_domain_form(ntlm_server: AuthServer) -> None:
    result = send_through(settings(ntlm_server, "OLDCORP\\dave", "Dave-pw-1"))

    assert not result.ok
    assert result.reply_code == 535
    assert result.diagnosis == "ntlm-domain-mismatch"
    assert result.setting == "login"
    assert "OLDCORP" in (result.cause or "")
    assert "CORP\\dave" in (result.fix or "")
    assert "DOMAIN\\user" in (result.fix or "")

    fixed = send_through(settings(ntlm_server, "CORP\\dave", "Dave-pw-1"))
    assert fixed.ok


def test_server_domain_in_any_case_is_no_mismatch(ntlm_server: AuthServer) -> None:
    result = send_through(settings(ntlm_server, "corp\\bob", "wrong-password"))

    assert result.diagnosis == "auth-credentials-rejected"


def test_worker_delivers_through_ntlm(
    ntlm_server: AuthServer, runtime: Runtime
) -> None:
    add_profile(
        runtime,
        ntlm_server.port,
        mechanism="NTLM",
        login="CORP\\bob",
        password="Bob-pw-1",
        confirm_password="Bob-pw-1",
    )
    message_pk = queue(runtime)

    assert drain(runtime) == 1

    shown = view(runtime, message_pk)
    assert shown["status"] == "sent"
    received = ntlm_server.handler.messages
    assert len(received) == 1
    assert received[0].login == "CORP\\bob"
    assert received[0].rcpt_tos == ["bob@example.com"]


def test_split_login_forms() -> None:
    assert split_login("CORP\\bob") == NtlmLogin("CORP", "bob")
    assert split_login("bob@corp.example") == NtlmLogin("", "bob@corp.example")
    assert split_login("bob") == NtlmLogin("", "bob")
    assert split_login("CORP\\bob").spnego_username == "CORP\\bob"
    assert split_login("bob").spnego_username == "bob"
