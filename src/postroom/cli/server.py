"""`postroom serve`, `postroom worker` and `postroom sink`: the long-running commands."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from postroom import __version__
from postroom.cli.common import EXIT_INVALID, fail, runtime
from postroom.config import ConfigError, load_settings
from postroom.devserver.sink import (
    ReceivedMessage,
    SinkHandler,
    SinkServer,
    server_tls_context,
)
from postroom.outbox.metrics import start_metrics_server
from postroom.outbox.worker import Worker


def serve(
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="HTTP port (default 8400).")
    ] = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker", help="Run the delivery worker in this process."
        ),
    ] = True,
    scheduler: Annotated[
        bool,
        typer.Option(
            "--scheduler/--no-scheduler",
            help="Run the job scheduler in this process.",
        ),
    ] = True,
) -> None:
    """Run the HTTP API, the delivery worker and the job scheduler in one process."""
    import uvicorn

    from postroom.api.app import create_app

    with runtime(log_level=None) as opened:
        settings = opened.settings
        bind_host = host or settings.http_host
        bind_port = port or settings.http_port
        database = make_url(settings.effective_database_url).render_as_string(
            hide_password=True
        )
        typer.echo(
            f"Postroom {__version__} starting on http://{bind_host}:{bind_port} "
            f"(API docs at /docs)\n"
            f"database: {database}\n"
            f"delivery worker: {'running' if worker else 'off'}\n"
            f"scheduler: {'running' if scheduler else 'off'}",
            err=True,
        )
        app = create_app(opened, run_worker=worker, run_scheduler=scheduler)
        config = uvicorn.Config(
            app,
            host=bind_host,
            port=bind_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=30,
        )
        _clean_exit_server_class()(config).run()


def _clean_exit_server_class() -> type:
    import uvicorn

    class CleanExitServer(uvicorn.Server):
        """Uvicorn's server, but a graceful stop on SIGTERM exits with status 0.

        Uvicorn (0.29 and later) raises the captured signal again after
        shutting down, so the process would end with -15 even though every
        request and the worker finished cleanly.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    return CleanExitServer


def _install_stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)


def worker(
    drain: Annotated[
        bool, typer.Option("--drain", help="Send what is due now, then exit.")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics.",
        ),
    ] = None,
) -> None:
    """Run a delivery worker without the HTTP API.

    Any number of workers can share a PostgreSQL database. SIGTERM or Ctrl-C
    stops claiming, lets messages being sent finish within
    shutdown_timeout_seconds and gives the rest back to the queue.
    """
    with runtime(log_level=None) as opened:
        delivery = Worker(opened)
        if metrics_port is not None:
            try:
                start_metrics_server(opened.sessions, metrics_port)
            except OSError as exc:
                fail(
                    f"cannot serve metrics on 127.0.0.1 port {metrics_port}: "
                    f"{exc.strerror or exc}"
                )
        if drain:
            count = asyncio.run(delivery.drain())
            if count:
                typer.echo(
                    f"made {count} delivery attempts; nothing more is due", err=True
                )
            else:
                typer.echo("nothing was due for delivery", err=True)
            return

        async def main() -> None:
            stop = asyncio.Event()
            _install_stop_signals(asyncio.get_running_loop(), stop)
            await delivery.run(stop)

        asyncio.run(main())


def sink(
    port: Annotated[
        int, typer.Option("--port", help="Port to listen on at 127.0.0.1.")
    ] = 2525,
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", help="PEM certificate; enables STARTTLS."),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="PEM private key.")
    ] = None,
    implicit_tls: Annotated[
        bool,
        typer.Option(
            "--implicit-tls", help="Speak TLS from the first byte (like port 465)."
        ),
    ] = False,
    auth: Annotated[
        str | None,
        typer.Option("--auth", help="USER:PASSWORD that clients must log in with."),
    ] = None,
    folder: Annotated[
        Path | None,
        typer.Option(
            "--folder",
            help="Where to store messages (default: sink/ in the data directory).",
        ),
    ] = None,
    data_delay_ms: Annotated[
        int,
        typer.Option("--data-delay-ms", help="Wait this long before answering DATA."),
    ] = 0,
) -> None:
    """Run a development SMTP server on 127.0.0.1 that stores what it receives."""
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key must be given together", EXIT_INVALID)
    if implicit_tls and tls_cert is None:
        fail("--implicit-tls needs --tls-cert and --tls-key", EXIT_INVALID)
    users: dict[str, str] = {}
    if auth is not None:
        user, separator, password = auth.partition(":")
        if not separator or not user:
            fail("--auth must be USER:PASSWORD", EXIT_INVALID)
        users[user] = password
    if folder is None:
        try:
            folder = load_settings().data_dir / "sink"
        except ConfigError as exc:
            fail(str(exc), EXIT_INVALID)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"folder: cannot create {folder}: {exc.strerror or exc}", EXIT_INVALID)

    def announce(message: ReceivedMessage) -> None:
        subject = message.headers.get("Subject", "")
        typer.echo(
            f"received {message.id} from <{message.mail_from}> to "
            f"{', '.join(f'<{rcpt}>' for rcpt in message.rcpt_tos)} "
            f"({len(message.content)} bytes) subject: {subject}"
        )

    tls_context = None
    if tls_cert is not None and tls_key is not None:
        tls_context = server_tls_context(str(tls_cert), str(tls_key))
    server = SinkServer(
        SinkHandler(
            folder=folder,
            users=users,
            data_delay=data_delay_ms / 1000,
            on_message=announce,
        ),
        port=port,
        tls_context=tls_context,
        implicit_tls=implicit_tls,
    )
    try:
        server.start()
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1 port {port}: {exc.strerror or exc}")
    mode = (
        "implicit TLS"
        if implicit_tls
        else "STARTTLS offered"
        if tls_context
        else "plain text"
    )
    typer.echo(
        f"Postroom sink listening on 127.0.0.1:{port} ({mode}"
        f"{', AUTH required' if users else ''}); storing mail in {folder}",
        err=True,
    )
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_args: stopped.set())
    try:
        stopped.wait()
    finally:
        server.stop()
