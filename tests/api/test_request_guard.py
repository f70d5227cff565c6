"""The token and size checks that run before a request body is read.

Against a real `postroom serve` over a raw socket, so a test can send the
headers and part of a body and see the answer arrive without sending the
rest: a server that read the body first would wait for it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from postroom.domain.db import ensure_system_profiles, transaction
from postroom.domain.tokens import create_token
from tests.conftest import _truncate_all, make_runtime
from tests.peers.service import running_service

REQUEST_LIMIT = 200_000
MESSAGE_LIMIT = 100_000
CHUNK = 16 * 1024


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """Yield the base URL of `postroom serve` and a valid token.

    One server per database for the whole module: starting one takes seconds.
    """
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database_url")
    folder = tmp_path_factory.mktemp("guard")
    runtime = make_runtime(folder, url)
    if url is not None:
        _truncate_all(runtime)
        ensure_system_profiles(runtime.sessions)
    with transaction(runtime.sessions) as session:
        token = create_token(session, "tests")
    try:
        with running_service(
            runtime,
            folder / "serve",
            worker=False,
            max_request_bytes=str(REQUEST_LIMIT),
            max_message_bytes=str(MESSAGE_LIMIT),
        ) as base:
            yield base, token
    finally:
        runtime.close()


def open_request(base: str, head: str) -> socket.socket:
    """Connect and send a request's head, without its body."""
    address = urlsplit(base)
    connection = socket.create_connection(
        (address.hostname or "127.0.0.1", address.port or 80), timeout=10
    )
    connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
    return connection


def read_response(connection: socket.socket) -> tuple[int, bytes]:
    """Read one response; return its status code and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        received = connection.recv(65536)
        if not received:
            break
        data += received
    header, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in header.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        received = connection.recv(65536)
        if not received:
            break
        body += received
    return int(header.split()[1]), body


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def head(path: str, *headers: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return "\n".join(lines) + "\n"


def test_no_token_rejected_before_body(service: tuple[str, str]) -> None:
    base, _token = service
    connection = open_request(
        base,
        head(
            "/api/messages",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ),
    )
    with connection:
        # One chunk of a body that never ends: the response must not wait for it.
        connection.sendall(chunk(b'{"profile": "' + b"x" * CHUNK))

        status, data = read_response(connection)

    assert status == 401
    assert b"missing bearer token" in data


def test_declared_length_over_limit_is_413(service: tuple[str, str]) -> None:
    base, token = service
    connection = open_request(
        base,
        head(
            "/api/messages",
            f"Authorization: Bearer {token}",
            "Content-Type: application/json",
            f"Content-Length: {300_000_000}",
        ),
    )
    with connection:
        status, data = read_response(connection)

    assert status == 413
    assert b"POSTROOM_MAX_REQUEST_BYTES" in data


def test_chunked_body_over_limit_is_413(service: tuple[str, str]) -> None:
    base, token = service
    connection = open_request(
        base,
        head(
            "/api/messages",
            f"Authorization: Bearer {token}",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ),
    )
    sent = 0
    with connection:
        try:
            connection.sendall(chunk(b'{"profile": "Orders", "text": "'))
            while sent < 4 * REQUEST_LIMIT:
                connection.sendall(chunk(b"x" * CHUNK))
                sent += CHUNK
            connection.sendall(chunk(b'"}') + b"0\r\n\r\n")
        except OSError:
            # The server responded and closed the connection before the body ended.
            pass

        status, data = read_response(connection)

    assert status == 413
    assert b"POSTROOM_MAX_REQUEST_BYTES" in data


def test_no_token_malformed_json_is_401(service: tuple[str, str]) -> None:
    base, _token = service

    answer = httpx.post(
        f"{base}/api/messages",
        content=b"{bad",
        headers={"Content-Type": "application/json"},
    )

    assert answer.status_code == 401
    assert "JSON" not in answer.text


def test_wrong_token_is_401(service: tuple[str, str]) -> None:
    base, _token = service

    answer = httpx.post(
        f"{base}/api/messages",
        json={"profile": "Orders"},
        headers={"Authorization": "Bearer pr_not-a-token"},
    )

    assert answer.status_code == 401
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["header", "Authorization"]
    assert error["msg"] == "invalid or revoked bearer token"
    assert answer.headers["www-authenticate"] == "Bearer"


def test_open_paths_need_no_token(service: tuple[str, str]) -> None:
    base, _token = service

    health = httpx.get(f"{base}/api/health")
    oauth_page = httpx.get(f"{base}/oauth/start/no-such-state")

    assert health.status_code == 200
    # The browser page handles the request itself: the state is unknown.
    assert oauth_page.status_code not in (401, 413)
    assert "text/html" in oauth_page.headers["content-type"]


def test_valid_token_passes(service: tuple[str, str]) -> None:
    base, token = service

    answer = httpx.get(
        f"{base}/api/messages", headers={"Authorization": f"Bearer {token}"}
    )

    assert answer.status_code == 200


def queue(base: str, token: str, **fields: Any) -> httpx.Response:
    return httpx.post(
        f"{base}/api/messages",
        json={"profile": "Orders", "to": ["bob@example.com"], **fields},
        headers={"Authorization": f"Bearer {token}"},
    )


def test_message_over_limit_is_422(service: tuple[str, str]) -> None:
    base, token = service
    headers = {"Authorization": f"Bearer {token}"}
    created = httpx.post(
        f"{base}/api/profiles",
        json={
            "name": "Orders",
            "host": "127.0.0.1",
            "port": 2525,
            "security": "none",
            "from": "orders@example.com",
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text

    # Each body alone is under the limit; the built message is over it.
    both = queue(base, token, text="t" * 50_000, html="<p>" + "h" * 60_000 + "</p>")
    text_alone = queue(base, token, text="t" * (MESSAGE_LIMIT - 1000) + "é" * 1000)
    fits = queue(base, token, text="t" * 1000)

    assert both.status_code == 422
    assert both.json()["detail"][0]["loc"] == ["body", "html"]
    assert "POSTROOM_MAX_MESSAGE_BYTES" in both.json()["detail"][0]["msg"]
    assert text_alone.status_code == 422
    assert text_alone.json()["detail"][0]["loc"] == ["body", "text"]
    assert fits.status_code == 202, fits.text
    listed = httpx.get(f"{base}/api/messages", headers=headers).json()
    assert [message["id"] for message in listed] == [fits.json()["id"]]
