"""Helpers for outbox tests: profiles, queueing, a worker in a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.models import OutboxMessage, Profile
from postroom.outbox import store
from postroom.outbox.dbcall import DatabaseCaller
from postroom.outbox.queue import MessageRequest, enqueue, message_view
from postroom.outbox.worker import Worker
from postroom.runtime import Runtime


def add_profile(runtime: Runtime, port: int, **changes: Any) -> None:
    values: dict[str, Any] = {
        "name": "Orders",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "Orders <orders@example.com>",
        "connect_timeout": 2.0,
        "command_timeout": 2.0,
    }
    values.update(changes)
    with transaction(runtime.sessions) as session:
        profiles.create_profile(
            session, runtime.secrets, profiles.ProfileInput(**values)
        )


def queue(runtime: Runtime, **changes: Any) -> int:
    values: dict[str, Any] = {
        "profile": "Orders",
        "to": ["bob@example.com"],
        "subject": "Your order shipped",
        "text": "Parcel 42 is on its way.",
    }
    values.update(changes)
    with transaction(runtime.sessions) as session:
        return enqueue(session, MessageRequest.model_validate(values)).id


def claim(
    runtime: Runtime,
    path: str,
    *,
    exclude_profiles: list[str] | None = None,
    profile_cache: store.ProfileCache | None = None,
) -> tuple[list[store.ClaimedMessage], dict[str, Profile]]:
    """Claim up to ten due messages with the store function (``path`` "store")
    or as a worker does ("worker"): on PostgreSQL, without SQLAlchemy."""
    cache = profile_cache or store.ProfileCache()
    if path == "store":
        return store.claim_due(
            runtime.sessions,
            "worker",
            10,
            60,
            exclude_profiles=exclude_profiles,
            profile_cache=cache,
        )

    async def main() -> tuple[list[store.ClaimedMessage], dict[str, Profile]]:
        caller = DatabaseCaller(runtime.engine, runtime.sessions)
        try:
            return await caller.claim_due(
                "worker", 10, 60, exclude_profiles or [], cache
            )
        finally:
            await caller.close()

    return asyncio.run(main())


def view(runtime: Runtime, message_pk: int) -> dict[str, Any]:
    with transaction(runtime.sessions) as session:
        message = session.get(OutboxMessage, message_pk)
        assert message is not None
        return message_view(message)


def drain(runtime: Runtime) -> int:
    return asyncio.run(Worker(runtime).drain())


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll until ``condition`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


class BackgroundWorker:
    """A worker running in its own thread and event loop, as in `postroom serve`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.stop: asyncio.Event | None = None
        self.worker: Worker | None = None

    async def _main(self) -> None:
        self.stop = asyncio.Event()
        self.worker = Worker(self.runtime)
        await self.worker.run(self.stop)

    def __enter__(self) -> BackgroundWorker:
        self.thread.start()
        self.done = asyncio.run_coroutine_threadsafe(self._main(), self.loop)
        wait_for(lambda: self.stop is not None)
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        assert self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        try:
            self.done.result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()
