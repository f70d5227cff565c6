"""Write attempt outcomes to the database in batches (group commit).

Senders hand in outcomes as replies arrive and get a future that completes
once the outcome is committed. While one transaction is being written the
next outcomes gather, so under load each commit carries many of them. The
recorder can also let a batch linger a few milliseconds for more. A failed
write is retried until it succeeds: an outcome is never dropped, and until it is committed the message
stays claimed, so a worker that dies meanwhile leaves it to be sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from postroom.outbox.dbcall import DatabaseCaller
from postroom.outbox.store import Outcome

log = logging.getLogger("postroom.delivery")

_RETRY_FIRST_SECONDS = 0.2
_RETRY_MAX_SECONDS = 5.0
# The maximum number of outcomes in one transaction.
_MAX_BATCH = 500


class Recorder:
    def __init__(
        self,
        worker_id: str,
        call: DatabaseCaller,
        linger_seconds: float = 0.0,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        """``linger_seconds``: how long the first outcome of a batch waits for
        more, if no sender is waiting for it. ``on_commit`` is called with
        the number of outcomes after each commit."""
        self._worker_id = worker_id
        self._call = call
        self._linger_seconds = linger_seconds
        self._on_commit = on_commit
        self._pending: list[tuple[Outcome, asyncio.Future[None]]] = []
        self._arrived = asyncio.Event()
        # Set when a sender is about to wait for a commit: lingering longer
        # would only keep it waiting.
        self._hurry = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # Sizes of the batches written, for the benchmark and the metrics.
        self.batches = 0
        self.outcomes = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="postroom-recorder")

    def submit(self, outcome: Outcome) -> asyncio.Future[None]:
        """Queue an outcome; the returned future completes once it is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, future))
        self._arrived.set()
        return future

    def hurry(self) -> None:
        """Write what has arrived without waiting for more outcomes."""
        self._hurry.set()

    async def close(self) -> None:
        """Write everything submitted so far, then stop."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        delay = _RETRY_FIRST_SECONDS
        while True:
            if not self._pending:
                if self._closing:
                    return
                await self._arrived.wait()
                self._arrived.clear()
                continue
            if (
                self._linger_seconds
                and len(self._pending) < _MAX_BATCH
                and not self._closing
            ):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._linger_seconds):
                        await self._hurry.wait()
            self._hurry.clear()
            batch = self._pending[:_MAX_BATCH]
            del self._pending[:_MAX_BATCH]
            try:
                await self._call.record_outcomes(
                    [outcome for outcome, _future in batch], self._worker_id
                )
            except Exception as exc:
                # NOTE: a commit whose reply was lost is written again: its
                # attempts get a second row each (messages and recipients
                # are only set again to the same values).
                log.error(
                    "cannot record delivery outcomes; trying again",
                    extra={"outcomes": len(batch), "error": str(exc)},
                )
                self._pending = batch + self._pending
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_SECONDS)
                continue
            delay = _RETRY_FIRST_SECONDS
            self.batches += 1
            self.outcomes += len(batch)
            for _outcome, future in batch:
                if not future.done():
                    future.set_result(None)
            if self._on_commit is not None:
                self._on_commit(len(batch))
