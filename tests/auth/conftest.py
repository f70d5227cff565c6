"""Fixtures of the auth tests: a Kerberos realm and a GSSAPI SMTP server."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers.auth_smtp import AuthServer
from tests.peers.kdc import REALM, Kdc

USER = "alice"
USER_PASSWORD = "Alice-krb-pw-1"
# A service account that logs in with a keytab instead of a password.
KEYTAB_USER = "relay"


@dataclass
class Realm:
    kdc: Kdc
    server_keytab: Path
    client_keytab: Path
    # krb5.conf variants a profile can point at.
    skewed_config: Path
    unreachable_config: Path


@pytest.fixture(scope="session")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    """One Kerberos realm for the whole test session, KDC on loopback."""
    missing = [
        binary
        for binary in ("kdb5_util", "kadmin.local", "krb5kdc")
        if shutil.which(binary) is None
    ]
    if missing:
        pytest.fail(
            f"Kerberos binaries missing: {', '.join(missing)}; run "
            "scripts/install-system-packages (krb5-kdc, krb5-admin-server)",
            pytrace=False,
        )
    directory = tmp_path_factory.mktemp("realm")
    kdc = Kdc(directory)
    with pytest.MonkeyPatch.context() as patch:
        # Set before this process's first libkrb5 call. KRB5CCNAME points at
        # a file nothing may create: Postroom keeps its tickets in memory.
        for name, value in kdc.environment().items():
            patch.setenv(name, value)
        kdc.start()
        try:
            kdc.add_user(USER, USER_PASSWORD)
            kdc.add_service(KEYTAB_USER)
            kdc.add_service("smtp/localhost")
            # Registered at the KDC but missing from the server's keytab.
            kdc.add_service("smtp/other.localhost")
            server_keytab = kdc.export_keytab(
                "smtp/localhost", directory / "smtp.keytab"
            )
            client_keytab = kdc.export_keytab(KEYTAB_USER, directory / "relay.keytab")
            skewed = kdc.start_skewed("+1h")
            closed = _closed_port()
            unreachable = kdc.client_config(directory / "krb5-unreachable.conf", closed)
            yield Realm(kdc, server_keytab, client_keytab, skewed, unreachable)
        finally:
            kdc.stop()


def _closed_port() -> int:
    from tests.peers.kdc import free_udp_tcp_port

    # Free a moment ago and not bound by any process, so connections are refused.
    return free_udp_tcp_port()


@pytest.fixture
def start_gssapi(realm: Realm) -> Iterator[Callable[..., AuthServer]]:
    from tests.peers.gssapi_smtp import GssapiHandler

    started: list[AuthServer] = []

    def start(**options: Any) -> AuthServer:
        auth_line_limit = options.pop("auth_line_limit", None)
        handler = GssapiHandler(keytab=str(realm.server_keytab), **options)
        server = AuthServer(handler)
        if auth_line_limit is not None:
            server.auth_line_limit = auth_line_limit
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


__all__ = ["REALM", "USER", "USER_PASSWORD", "Realm"]


CLIENT_ID = "postroom-test-app"
CLIENT_SECRET = "client-secret-Very-Private-1"


@pytest.fixture
def oauth_provider() -> Iterator[Any]:
    from tests.peers.oauth_server import OAuthServer

    provider = OAuthServer(clients={CLIENT_ID: CLIENT_SECRET}).start()
    yield provider
    provider.stop()


@pytest.fixture
def xoauth2_server(oauth_provider: Any) -> Iterator[AuthServer]:
    from tests.peers.xoauth2_smtp import XOAuth2Handler

    server = AuthServer(XOAuth2Handler(provider=oauth_provider)).start()
    yield server
    server.stop()
