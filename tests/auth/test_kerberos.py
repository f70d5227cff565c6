"""Kerberos (SASL GSSAPI) against a throwaway MIT realm and a GSSAPI server."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from postroom.runtime import Runtime
from postroom.smtp.settings import ConnectionSettings
from tests.auth.conftest import KEYTAB_USER, REALM, USER, USER_PASSWORD, Realm
from tests.auth.helpers import add_profile, drain, queue, send_through, test_email, view
from tests.peers.auth_smtp import AuthServer
from tests.peers.gssapi_smtp import GssapiHandler

StartServer = Callable[..., AuthServer]


def settings(server: AuthServer, **changes: Any) -> ConnectionSettings:
    values: dict[str, Any] = {
        "host": "localhost",
        "port": server.port,
        "security": "none",
        "login": USER,
        "password": USER_PASSWORD,
        "mechanism": "Kerberos",
        "connect_timeout": 5.0,
        "command_timeout": 5.0,
    }
    options = changes.pop("options", {})
    values.update(changes)
    return ConnectionSettings(**values, mechanism_options=options)


def handler_of(server: AuthServer) -> GssapiHandler:
    assert isinstance(server.handler, GssapiHandler)
    return server.handler


def test_password_login_sends_message(realm: Realm, start_gssapi: StartServer) -> None:
    server = start_gssapi()

    result = send_through(settings(server))

    assert result.ok, result.cause
    handler = handler_of(server)
    assert handler.principals == [f"{USER}@{REALM}"]
    assert handler.messages[0].login == f"{USER}@{REALM}"
    # Credentials stayed in memory: the process's default cache is untouched.
    assert not realm.kdc.ccache.exists()


def test_realm_taken_from_login(realm: Realm, start_gssapi: StartServer) -> None:
    server = start_gssapi()

    result = send_through(settings(server, login=f"{USER}@{REALM}"))

    assert result.ok, result.cause
    assert handler_of(server).principals == [f"{USER}@{REALM}"]


def test_profile_krb5_conf_used(realm: Realm, start_gssapi: StartServer) -> None:
    server = start_gssapi()

    result = send_through(settings(server, options={"config": str(realm.kdc.config)}))

    assert result.ok, result.cause


def test_keytab_login_sends_message(realm: Realm, start_gssapi: StartServer) -> None:
    server = start_gssapi()

    result = send_through(
        settings(
            server,
            login=KEYTAB_USER,
            password=None,
            options={"keytab": str(realm.client_keytab)},
        )
    )

    assert result.ok, result.cause
    assert handler_of(server).principals == [f"{KEYTAB_USER}@{REALM}"]
    assert not realm.kdc.ccache.exists()


def test_long_first_token_sent_after_334(
    realm: Realm, start_gssapi: StartServer
) -> None:
    # The stock 512-octet AUTH line limit: the ticket does not fit on it.
    server = start_gssapi(auth_line_limit=512)

    result = send_through(settings(server))

    assert result.ok, result.cause
    handler = handler_of(server)
    assert handler.initial_on_auth_line == [False]
    assert handler.first_token_sizes[0] > 512


def test_security_layer_negotiated(realm: Realm, start_gssapi: StartServer) -> None:
    server = start_gssapi(offered_layers=0x07)

    result = send_through(settings(server))

    assert result.ok, result.cause
    # "No security layer" with a maximum buffer size of 0 (RFC 4752, 3.1).
    assert handler_of(server).chosen_layers == [(1, 0)]


def test_security_layer_required_refused(
    realm: Realm, start_gssapi: StartServer
) -> None:
    server = start_gssapi(offered_layers=0x06)

    result = send_through(settings(server))

    assert not result.ok
    assert result.step == "auth"
    assert "security layer" in (result.reply_text or "")
    assert handler_of(server).principals == []


def test_wrong_password_diagnosed(realm: Realm, start_gssapi: StartServer) -> None:
    server = start_gssapi()

    result = send_through(settings(server, password="not-the-password"))

    assert not result.ok
    assert result.diagnosis == "kerberos-password-rejected"
    assert "Preauthentication failed" in (result.reply_text or "")
    assert result.setting == "password"
    assert f"{USER}" in (result.cause or "")


def test_unknown_principal_diagnosed(realm: Realm, start_gssapi: StartServer) -> None:
    server = start_gssapi()

    result = send_through(settings(server, login="mallory"))

    assert not result.ok
    assert result.diagnosis == "kerberos-principal-unknown"
    assert result.setting == "login"
    assert "user@REALM" in (result.fix or "")


def test_kdc_unreachable_diagnosed(realm: Realm, start_gssapi: StartServer) -> None:
    server = start_gssapi()

    result = send_through(
        settings(server, options={"config": str(realm.unreachable_config)})
    )

    assert not result.ok
    assert result.diagnosis == "kerberos-kdc-unreachable"
    assert result.transient is True
    assert result.setting == "kerberos_config"


def test_clock_skew_diagnosed(realm: Realm, start_gssapi: StartServer) -> None:
    server = start_gssapi()

    # The KDC of this configuration runs an hour ahead (libfaketime).
    result = send_through(
        settings(server, options={"config": str(realm.skewed_config)})
    )

    assert not result.ok
    assert result.diagnosis == "kerberos-clock-skew"
    assert "Clock skew too great" in (result.reply_text or "")
    assert result.setting == "clock"


def test_unknown_service_principal_diagnosed(
    realm: Realm, start_gssapi: StartServer
) -> None:
    server = start_gssapi()

    result = send_through(
        settings(server, options={"service_principal": "smtp/nowhere.localhost"})
    )

    assert not result.ok
    assert result.diagnosis == "kerberos-service-principal-unknown"
    assert "smtp/nowhere.localhost" in (result.cause or "")
    assert result.setting == "kerberos_service_principal"


def test_default_service_principal_follows_host(
    realm: Realm, start_gssapi: StartServer
) -> None:
    server = start_gssapi()

    # Dialing the address instead of the name asks for smtp/127.0.0.1.
    result = send_through(settings(server, host="127.0.0.1"))

    assert result.diagnosis == "kerberos-service-principal-unknown"
    assert "smtp/127.0.0.1" in (result.cause or "")


def test_ticket_for_other_service_rejected(
    realm: Realm, start_gssapi: StartServer
) -> None:
    server = start_gssapi()

    # Known to the KDC, but the server's keytab has no key for it.
    result = send_through(
        settings(server, options={"service_principal": "smtp/other.localhost"})
    )

    assert not result.ok
    assert result.reply_code == 535
    assert result.diagnosis == "kerberos-ticket-rejected"
    assert "smtp/other.localhost" in (result.cause or "")


def test_diagnoses_are_distinct() -> None:
    from postroom.diagnosis.catalogue import CATALOGUE

    ids = [entry.id for entry in CATALOGUE if entry.id.startswith("kerberos-")]
    assert len(ids) == len(set(ids))
    fixes = [entry.fix for entry in CATALOGUE if entry.id.startswith("kerberos-")]
    assert len(fixes) == len(set(fixes))


def test_missing_gssapi_diagnosed(
    realm: Realm, start_gssapi: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_gssapi()
    # An installation without the kerberos extra: importing gssapi fails.
    monkeypatch.setitem(sys.modules, "gssapi", None)

    result = send_through(settings(server))

    assert not result.ok
    assert result.diagnosis == "kerberos-not-installed"
    assert "postroom[kerberos]" in (result.fix or "")
    assert result.setting == "installation"


def test_worker_delivers_with_keytab(
    realm: Realm, start_gssapi: StartServer, runtime: Runtime
) -> None:
    server = start_gssapi()
    add_profile(
        runtime,
        server.port,
        host="localhost",
        mechanism="Kerberos",
        login=KEYTAB_USER,
        kerberos_keytab=str(realm.client_keytab),
        kerberos_config=str(realm.kdc.config),
    )
    message_pk = queue(runtime)

    assert drain(runtime) == 1

    assert view(runtime, message_pk)["status"] == "sent"
    assert handler_of(server).messages[0].login == f"{KEYTAB_USER}@{REALM}"


def test_worker_delivers_with_password(
    realm: Realm, start_gssapi: StartServer, runtime: Runtime
) -> None:
    server = start_gssapi()
    add_profile(
        runtime,
        server.port,
        host="localhost",
        mechanism="Kerberos",
        login=USER,
        password=USER_PASSWORD,
        confirm_password=USER_PASSWORD,
        kerberos_service_principal="smtp/localhost",
    )
    message_pk = queue(runtime)

    assert drain(runtime) == 1

    assert view(runtime, message_pk)["status"] == "sent"
    assert handler_of(server).messages[0].login == f"{USER}@{REALM}"
    assert test_email(runtime).ok


def test_keytab_without_principal_diagnosed(
    realm: Realm, start_gssapi: StartServer
) -> None:
    server = start_gssapi()

    # The server's keytab holds smtp/localhost, not the login's key.
    result = send_through(
        settings(
            server,
            login=KEYTAB_USER,
            password=None,
            options={"keytab": str(realm.server_keytab)},
        )
    )

    assert not result.ok
    assert result.diagnosis == "kerberos-keytab-unusable"
    assert result.setting == "kerberos_keytab"


def test_unknown_realm_diagnosed(realm: Realm, start_gssapi: StartServer) -> None:
    server = start_gssapi()

    result = send_through(settings(server, login=f"{USER}@NOWHERE.TEST"))

    assert not result.ok
    assert result.diagnosis == "kerberos-realm-unknown"
    assert result.setting == "kerberos_config"
