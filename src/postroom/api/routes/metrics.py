"""Prometheus metrics at /metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from postroom.api.deps import RuntimeDep
from postroom.outbox.metrics import PROCESS_REGISTRY, DatabaseCollector

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    """Outbox gauges from the database and this process's delivery metrics.

    Like most Prometheus endpoints it takes no token; it shows profile names
    and counts, never addresses or message content.
    """
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector(runtime.sessions))
    body = await asyncio.to_thread(generate_latest, database)
    body += generate_latest(PROCESS_REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
