"""Fixtures: runtimes on SQLite and PostgreSQL, SMTP peers, certificates."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from postroom.config import Settings
from postroom.crypto import generate_key
from postroom.devserver.sink import SinkHandler, SinkServer
from postroom.domain.models import Base
from postroom.runtime import Runtime, open_runtime
from tests.peers.certs import Certificates, make_certificates
from tests.peers.scripted import ScriptedServer

# The PostgreSQL server the tests create their own database on; each test
# session makes a fresh database there and drops it at the end.
PG_ADMIN_URL = os.environ.get(
    "POSTROOM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def _quiet_aiosmtpd() -> None:
    # aiosmtpd logs every session and warns about its own deprecated
    # login_data attribute on each AUTH.
    logging.getLogger("mail.log").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"postroom_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL at {PG_ADMIN_URL} is not usable ({exc}); start it or set "
            "POSTROOM_TEST_PG_URL",
            pytrace=False,
        )
    url = (
        make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    )
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate_all(runtime: Runtime) -> None:
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with runtime.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def make_runtime(tmp_path: Path, database_url: str | None, **overrides: Any) -> Runtime:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=generate_key(),
        **overrides,
    )
    return open_runtime(settings)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on a fresh SQLite database."""
    opened = make_runtime(tmp_path, None, retry_base_seconds=1.0)
    yield opened
    opened.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        opened = make_runtime(tmp_path, None, retry_base_seconds=1.0)
        yield opened
        opened.close()
        return
    url = request.getfixturevalue("pg_database_url")
    opened = make_runtime(tmp_path, url, retry_base_seconds=1.0)
    _truncate_all(opened)
    from postroom.domain.db import ensure_system_profiles

    ensure_system_profiles(opened.sessions)
    yield opened
    opened.close()


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[str]:
    """Postroom's HTTP server on a loopback port, as `postroom serve` runs it."""
    import threading
    import time

    import uvicorn

    from postroom.api.app import create_app
    from postroom.devserver.sink import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def start_sink(certificates: Certificates) -> Iterator[Callable[..., SinkServer]]:
    """Start aiosmtpd-based sinks: security "none", "starttls" or "tls"."""
    started: list[SinkServer] = []

    def start(
        security: str = "none", users: dict[str, str] | None = None, **handler: Any
    ) -> SinkServer:
        context = None
        if security != "none":
            context = certificates.localhost.server_context()
        server = SinkServer(
            SinkHandler(users=users or {}, **handler),
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


@pytest.fixture
def start_scripted(
    certificates: Certificates,
) -> Iterator[Callable[..., ScriptedServer]]:
    """Start scripted SMTP servers; see tests.peers.scripted."""
    started: list[ScriptedServer] = []

    def start(**kwargs: Any) -> ScriptedServer:
        if kwargs.pop("tls", False):
            kwargs.setdefault("tls_context", certificates.localhost.server_context())
        server = ScriptedServer(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
