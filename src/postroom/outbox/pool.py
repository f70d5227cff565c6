"""A pool of open SMTP connections to one profile's server.

Connections are kept open between messages and closed after the profile's
idle timeout. The pool never holds more than the profile's connection limit,
counted across every worker through ``ConnectionSlots``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from postroom.outbox.limits import ConnectionSlots, ProfileLimits
from postroom.smtp.session import SmtpSession
from postroom.smtp.settings import ConnectionSettings

log = logging.getLogger("postroom.delivery")

SessionFactory = Callable[[ConnectionSettings], SmtpSession]


class NoFreeSlot(Exception):
    """Every connection the profile may open is already open somewhere."""


@dataclass(eq=False)
class PooledConnection:
    session: SmtpSession
    settings: ConnectionSettings
    slot: int
    last_used: float
    # Messages sent over it; a connection that has sent one is "reused".
    messages: int = 0

    @property
    def is_usable(self) -> bool:
        # A connection with an announced transaction can only send that one.
        return self.session.is_connected and self.session.announced is None


class ConnectionPool:
    def __init__(
        self,
        profile_name: str,
        profile_id: int,
        settings: ConnectionSettings,
        limits: ProfileLimits,
        slots: ConnectionSlots,
        session_factory: SessionFactory = SmtpSession.for_delivery,
    ) -> None:
        self.profile_name = profile_name
        self.profile_id = profile_id
        self.settings = settings
        self.limits = limits
        self._slots = slots
        self._session_factory = session_factory
        self._idle: list[PooledConnection] = []
        self._busy: set[PooledConnection] = set()
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def open_count(self) -> int:
        return len(self._idle) + len(self._busy)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def update(self, settings: ConnectionSettings, limits: ProfileLimits) -> None:
        """Take new settings; connections opened with the old ones are retired."""
        self.limits = limits
        if settings != self.settings:
            self.settings = settings
            for connection in self._idle:
                self._close_later(connection)
            self._idle.clear()

    async def acquire(self) -> PooledConnection:
        """Return an idle connection that is still open, or open a new one.

        Raises NoFreeSlot when the profile's limit is reached, and SmtpFailure
        when a new connection cannot be opened.
        """
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            expired = now - connection.last_used > self.limits.pool_idle_timeout
            if connection.is_usable and not expired:
                self._busy.add(connection)
                return connection
            # The server closed it while it was idle, or it idled too long.
            self._close_later(connection)
        return await self.open()

    async def open(self) -> PooledConnection:
        if self.open_count >= self.limits.max_connections:
            raise NoFreeSlot
        try:
            slot = await self._slots.acquire(
                self.profile_id, self.limits.max_connections
            )
        except (psycopg.Error, OSError) as exc:
            log.warning(
                "cannot reach the database to take a connection slot",
                extra={"profile": self.profile_name, "error": str(exc)},
            )
            raise NoFreeSlot from exc
        if slot is None:
            raise NoFreeSlot
        session = self._session_factory(self.settings)
        try:
            await session.open()
        except BaseException:
            await session.close()
            await self._slots.release(self.profile_id, slot)
            raise
        connection = PooledConnection(
            session=session,
            settings=self.settings,
            slot=slot,
            last_used=time.monotonic(),
        )
        self._busy.add(connection)
        return connection

    def release(self, connection: PooledConnection, *, reusable: bool) -> None:
        """Give a connection back; one that is broken or outdated is closed."""
        self._busy.discard(connection)
        connection.last_used = time.monotonic()
        keep = (
            reusable
            and connection.is_usable
            and connection.settings == self.settings
            and self.limits.pool_idle_timeout > 0
        )
        if keep:
            self._idle.append(connection)
        else:
            self._close_later(connection)

    def close_expired(self) -> None:
        """Close the connections that have been idle longer than the timeout."""
        now = time.monotonic()
        keep = []
        for connection in self._idle:
            if now - connection.last_used > self.limits.pool_idle_timeout:
                self._close_later(connection)
            else:
                keep.append(connection)
        self._idle = keep

    def _close_later(self, connection: PooledConnection) -> None:
        self._busy.discard(connection)
        task = asyncio.create_task(self._close(connection))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, connection: PooledConnection) -> None:
        try:
            await connection.session.close()
        finally:
            await self._slots.release(self.profile_id, connection.slot)

    async def close(self) -> None:
        """Say QUIT on every connection and wait until they are closed."""
        for connection in [*self._idle, *self._busy]:
            self._close_later(connection)
        self._idle.clear()
        self._busy.clear()
        if self._closing:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._closing, return_exceptions=True)
