"""The FastAPI application; `postroom serve` runs it with the delivery worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from postroom import __version__
from postroom.api.docs import install_docs
from postroom.api.errors import install_error_handlers, install_validation_handler
from postroom.api.guard import RequestGuard
from postroom.api.routes import (
    diagnose,
    events,
    jobs,
    messages,
    metrics,
    oauth,
    presets,
    probe,
    profiles,
    reports,
    templates,
)
from postroom.runtime import Runtime
from postroom.web import oauth as oauth_pages

log = logging.getLogger("postroom.api")


def create_app(
    runtime: Runtime, *, run_worker: bool = False, run_scheduler: bool = False
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        if run_worker:
            from postroom.outbox.worker import Worker

            tasks.append(asyncio.create_task(Worker(runtime).run(stop)))
        if run_scheduler:
            from postroom.schedule.scheduler import Scheduler

            tasks.append(asyncio.create_task(Scheduler(runtime).run(stop)))
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
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    app.state.runtime = runtime
    install_error_handlers(app)
    install_validation_handler(app)
    app.add_middleware(
        RequestGuard,
        runtime=runtime,
        max_body_bytes=runtime.settings.max_request_bytes,
    )

    @app.get("/api/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(profiles.router)
    app.include_router(messages.router)
    app.include_router(diagnose.router)
    app.include_router(presets.router)
    app.include_router(probe.router)
    app.include_router(oauth.router)
    app.include_router(oauth_pages.router)
    app.include_router(jobs.router)
    app.include_router(jobs.schedules_router)
    app.include_router(jobs.data_sources_router)
    app.include_router(reports.router)
    app.include_router(templates.router)
    app.include_router(events.router)
    app.include_router(metrics.router)
    return app
