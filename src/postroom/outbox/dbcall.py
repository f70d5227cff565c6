"""Run the delivery engine's frequent database calls where they cost least.

SQLite runs in this process and its calls are CPU work. In a thread, such
a call gives up the interpreter lock at every row and waits to get it back
while the event loop is busy sending, which made each commit several times
slower than the work in it. On SQLite the claim and the outcome commits
therefore run on the event loop; they take a few milliseconds per batch.
They do not wait there for another writer's lock: a locked database moves
the call to a thread, where it waits as usual. PostgreSQL calls wait on the
network, so they always run in a thread and the loop sends meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine

from postroom.domain.db import is_sqlite_locked, sqlite_without_lock_wait

P = ParamSpec("P")
T = TypeVar("T")


class DatabaseCaller:
    def __init__(self, engine: Engine) -> None:
        self.on_loop = engine.dialect.name == "sqlite"

    async def __call__(
        self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self.on_loop:
            try:
                with sqlite_without_lock_wait():
                    return function(*args, **kwargs)
            except Exception as exc:
                # The transaction was rolled back whole, so it can run again.
                if not is_sqlite_locked(exc):
                    raise
        return await asyncio.to_thread(function, *args, **kwargs)
