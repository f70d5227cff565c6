"""The FastAPI application; `postroom serve` runs it with the delivery worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from postroom import __version__
from postroom.api.errors import install_error_handlers
from postroom.api.routes import messages, metrics, profiles
from postroom.runtime import Runtime

log = logging.getLogger("postroom.api")


def create_app(runtime: Runtime, *, run_worker: bool = False) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        if run_worker:
            from postroom.outbox.worker import Worker

            tasks.append(asyncio.create_task(Worker(runtime).run(stop)))
        try:
            yield
        finally:
            stop.set()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(
        title="Postroom",
        version=__version__,
        description="Email profiles, test emails with diagnosis, and a durable "
        "outbox that hands messages to your own SMTP provider.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)

    @app.get("/api/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(profiles.router)
    app.include_router(messages.router)
    app.include_router(metrics.router)
    return app
