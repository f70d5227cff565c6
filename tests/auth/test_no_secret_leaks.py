"""No password, token, ticket or key reaches logs, transcripts or API responses.

In the manner of aiosmtpd's assert_nopassleak: every secret, its base64
form and the AUTH payloads as sent on the wire are searched for in the
captured log records (with their structured fields), in the transcripts
of test emails, and in every API answer about the profile and its mail.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from fastapi.testclient import TestClient

from postroom.api.app import create_app
from postroom.domain.db import transaction
from postroom.domain.tokens import create_token
from postroom.logs import JsonFormatter
from postroom.outbox.worker import Worker
from postroom.runtime import Runtime
from tests.auth.conftest import CLIENT_ID, CLIENT_SECRET, USER, USER_PASSWORD, Realm
from tests.peers.auth_smtp import AuthServer
from tests.peers.certs import Certificates
from tests.peers.gssapi_smtp import GssapiHandler
from tests.peers.ntlm import NtlmHandler, write_user_file
from tests.peers.oauth_server import OAuthServer
from tests.peers.scripted import ScriptedServer
from tests.peers.xoauth2_smtp import XOAuth2Handler


def forms(secret: str) -> list[str]:
    """The shapes a secret can take: itself, its base64, and a base64 slice."""
    encoded = base64.b64encode(secret.encode()).decode()
    shapes = [secret, encoded]
    if len(encoded) > 48:
        shapes.append(encoded[8:40])
    return shapes


class Observed:
    """Everything a secret must not appear in."""

    def __init__(self, runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
        self.runtime = runtime
        self.caplog = caplog
        self.texts: list[str] = []
        self.client: TestClient

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.client.request(method, path, **kwargs)
        self.texts.append(answer.text)
        return answer

    def exercise(self, profile_body: dict[str, Any], *, expect_ok: bool = True) -> None:
        """Create the profile, send a test email and deliver a queued message."""
        created = self.api("POST", "/api/profiles", json=profile_body)
        assert created.status_code == 201, created.text
        tested = self.api(
            "POST", "/api/profiles/Orders/test", json={"to": "bob@example.com"}
        )
        assert tested.json()["ok"] is expect_ok, tested.json()
        queued = self.api(
            "POST",
            "/api/messages",
            json={
                "profile": "Orders",
                "to": ["bob@example.com"],
                "subject": "Order 7",
                "text": "Shipped.",
            },
        )
        message_id = queued.json()["id"]
        self.client.portal.call(Worker(self.runtime).drain)  # type: ignore[union-attr]
        self.api("GET", f"/api/messages/{message_id}")
        self.api("GET", "/api/profiles/Orders")
        self.api("GET", "/api/profiles")

    def assert_no_leak(self, secrets: list[str]) -> None:
        formatter = JsonFormatter()
        logs = [formatter.format(record) for record in self.caplog.records]
        assert logs, "nothing was logged: the check would prove nothing"
        haystacks = {"log": "\n".join(logs), "api": "\n".join(self.texts)}
        for secret in secrets:
            assert len(secret) >= 8, "a short secret would match by chance"
            for form in forms(secret):
                for where, text in haystacks.items():
                    assert form not in text, f"a secret leaked into the {where}"


@pytest.fixture
def observed(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> Iterator[Observed]:
    with transaction(runtime.sessions) as session:
        token = create_token(session, "tests")
    caplog.set_level(logging.DEBUG)
    # The test peers' own logger stays quiet: it is not Postroom's output.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    observer = Observed(runtime, caplog)
    with TestClient(create_app(runtime)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        observer.client = client
        yield observer


def body(port: int, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "Orders",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": "Orders <orders@example.com>",
        "connect_timeout": 5,
        "command_timeout": 5,
    }
    values.update(changes)
    return values


def test_ntlm_secrets_stay_hidden(
    observed: Observed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "Ntlm-Secret-Passw0rd"
    monkeypatch.setenv(
        "NTLM_USER_FILE",
        write_user_file(str(tmp_path / "users"), [("CORP", "bob", password)]),
    )
    server = AuthServer(NtlmHandler()).start()
    try:
        observed.exercise(
            body(
                server.port,
                mechanism="NTLM",
                login="CORP\\bob",
                password=password,
                confirm_password=password,
            )
        )
    finally:
        server.stop()

    handler = server.handler
    assert isinstance(handler, NtlmHandler)
    assert len(handler.messages) == 2
    observed.assert_no_leak([password, *handler.received_tokens])


def test_kerberos_secrets_stay_hidden(
    observed: Observed, realm: Realm, start_gssapi: Callable[..., AuthServer]
) -> None:
    server = start_gssapi()
    observed.exercise(
        body(
            server.port,
            host="localhost",
            mechanism="Kerberos",
            login=USER,
            password=USER_PASSWORD,
            confirm_password=USER_PASSWORD,
        )
    )

    handler = server.handler
    assert isinstance(handler, GssapiHandler)
    assert len(handler.messages) == 2
    # The tickets themselves, as sent in AUTH GSSAPI.
    observed.assert_no_leak([USER_PASSWORD, *handler.received_tokens])


def test_xoauth2_secrets_stay_hidden(
    observed: Observed, oauth_provider: OAuthServer, xoauth2_server: AuthServer
) -> None:
    refresh_token = oauth_provider.issue_refresh_token(CLIENT_ID)
    observed.exercise(
        body(
            xoauth2_server.port,
            mechanism="XOAUTH2",
            login="orders@example.com",
            oauth_provider="microsoft",
            oauth_client_id=CLIENT_ID,
            oauth_client_secret=CLIENT_SECRET,
            oauth_token_endpoint=oauth_provider.token_endpoint,
            oauth_refresh_token=refresh_token,
        )
    )
    observed.api("GET", "/api/profiles/Orders/oauth")
    observed.api("POST", "/api/profiles/Orders/oauth/refresh")
    # A failing refresh is logged and returned too.
    oauth_provider.revoke(refresh_token)
    failed = observed.api("POST", "/api/profiles/Orders/oauth/refresh")
    assert failed.json()["ok"] is False

    handler = xoauth2_server.handler
    assert isinstance(handler, XOAuth2Handler)
    assert len(handler.messages) == 2
    observed.assert_no_leak(
        [
            refresh_token,
            CLIENT_SECRET,
            *oauth_provider.access_tokens,
            *handler.received_responses,
        ]
    )


def test_client_key_stays_hidden(
    observed: Observed, certificates: Certificates, tmp_path: Path
) -> None:
    import ssl

    from postroom.devserver.sink import SinkHandler, SinkServer

    client_ca = trustme.CA()
    leaf = client_ca.issue_cert("sender.example")
    key = leaf.private_key_pem.bytes().decode()
    context = certificates.localhost.server_context()
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=client_ca.cert_pem.bytes().decode())
    server = SinkServer(SinkHandler(), port=0, tls_context=context)
    server.start()
    try:
        observed.exercise(
            body(
                server.port,
                host="localhost",
                security="starttls",
                ca_bundle=str(certificates.ca_file),
                client_certificate=leaf.cert_chain_pems[0].bytes().decode(),
                client_key=key,
            )
        )
    finally:
        server.stop()

    assert len(server.handler.messages) == 2
    # The key's base64 body, line by line, as well as the whole PEM.
    key_lines = [line for line in key.splitlines() if len(line) >= 40]
    observed.assert_no_leak([key, *key_lines])


# Servers that quote the client's AUTH lines in their 535 reply: the test
# email, the stored attempt and the recipient's reply must show none of them.


@pytest.mark.parametrize(
    ("offered", "mechanism"),
    [("PLAIN", "UserPassword"), ("LOGIN", "UserPassword"), ("CRAM-MD5", "CRAM-MD5")],
)
def test_echoed_password_lines_stay_hidden(
    observed: Observed,
    start_scripted: Callable[..., ScriptedServer],
    offered: str,
    mechanism: str,
) -> None:
    password = "Echoed-Passw0rd-Secret"
    server = start_scripted(extensions=[f"AUTH {offered}"], auth_echo=True)

    observed.exercise(
        body(
            server.port,
            mechanism=mechanism,
            login="alice@example.com",
            password=password,
            confirm_password=password,
        ),
        expect_ok=False,
    )

    message = observed.texts[-3]
    assert "[secret hidden]" in message, "the stored attempt shows no echo"
    observed.assert_no_leak(
        [password, *[line for line in server.auth_lines if len(line) >= 8]]
    )


def test_echoed_ntlm_tokens_stay_hidden(
    observed: Observed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "Ntlm-Echoed-Passw0rd"
    monkeypatch.setenv(
        "NTLM_USER_FILE",
        write_user_file(str(tmp_path / "users"), [("CORP", "bob", password)]),
    )
    server = AuthServer(NtlmHandler(echo_rejection=True)).start()
    try:
        observed.exercise(
            body(
                server.port,
                mechanism="NTLM",
                login="CORP\\bob",
                password=password,
                confirm_password=password,
            ),
            expect_ok=False,
        )
    finally:
        server.stop()

    handler = server.handler
    assert isinstance(handler, NtlmHandler)
    assert len(handler.received_tokens) == 4
    observed.assert_no_leak([password, *handler.received_tokens])


def test_echoed_kerberos_ticket_stays_hidden(
    observed: Observed, realm: Realm, start_gssapi: Callable[..., AuthServer]
) -> None:
    server = start_gssapi(echo_rejection=True)

    observed.exercise(
        body(
            server.port,
            host="localhost",
            mechanism="Kerberos",
            login=USER,
            password=USER_PASSWORD,
            confirm_password=USER_PASSWORD,
        ),
        expect_ok=False,
    )

    handler = server.handler
    assert isinstance(handler, GssapiHandler)
    assert len(handler.received_tokens) == 2
    observed.assert_no_leak([USER_PASSWORD, *handler.received_tokens])


def test_echoed_xoauth2_response_stays_hidden(
    observed: Observed, oauth_provider: OAuthServer
) -> None:
    server = AuthServer(
        XOAuth2Handler(provider=oauth_provider, echo_rejection=True)
    ).start()
    refresh_token = oauth_provider.issue_refresh_token(CLIENT_ID)
    try:
        observed.exercise(
            body(
                server.port,
                mechanism="XOAUTH2",
                login="orders@example.com",
                oauth_provider="microsoft",
                oauth_client_id=CLIENT_ID,
                oauth_client_secret=CLIENT_SECRET,
                oauth_token_endpoint=oauth_provider.token_endpoint,
                oauth_refresh_token=refresh_token,
            ),
            expect_ok=False,
        )
    finally:
        server.stop()

    handler = server.handler
    assert isinstance(handler, XOAuth2Handler)
    assert handler.received_responses
    # The whole line is masked, not only the token inside it: with some
    # login lengths the token's own base64 appears in the line's.
    observed.assert_no_leak(
        [
            refresh_token,
            *oauth_provider.access_tokens,
            *handler.received_responses,
            *[response[:32] for response in handler.received_responses],
        ]
    )
