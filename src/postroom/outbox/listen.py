"""Wake workers on PostgreSQL NOTIFY, from a connection that only listens.

Queueing code issues ``NOTIFY postroom_outbox`` inside its transaction, so
PostgreSQL delivers it to every listening worker, on any machine, the moment
the message is committed. A wakeup is only a hint: after the listening
connection is lost, the worker polls until it is back, and it looks for
work once more after reconnecting in case a notification was missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from postroom.outbox.limits import libpq_connect_args
from postroom.outbox.wakeup import CHANNEL

log = logging.getLogger("postroom.delivery")

_RECONNECT_FIRST_SECONDS = 0.5
_RECONNECT_MAX_SECONDS = 30.0


async def listen_for_work(database_url: str, wake: Callable[[], None]) -> None:
    """Call ``wake`` on every notification until cancelled."""
    connect_args = libpq_connect_args(database_url)
    delay = _RECONNECT_FIRST_SECONDS
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                **connect_args, autocommit=True
            ) as connection:
                await connection.execute(f"LISTEN {CHANNEL}")
                delay = _RECONNECT_FIRST_SECONDS
                wake()
                async for _notification in connection.notifies():
                    wake()
        except (psycopg.Error, OSError) as exc:
            log.warning(
                "lost the connection that listens for new messages; polling "
                "until it is back",
                extra={"error": str(exc), "retry_in_seconds": delay},
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RECONNECT_MAX_SECONDS)
