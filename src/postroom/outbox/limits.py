"""Per-profile delivery limits: message rates and concurrent connections.

Rates are counted in fixed UTC windows (one second, one minute, one day) in
the ``profile_usage`` table. A worker reserves several sends at once in one
short transaction that locks the profile's rows, so every worker sharing the
database draws from the same counts. A reservation is spent even when the
send it was for does not happen, which can only make a limit stricter.

Connections are counted with PostgreSQL advisory locks: slot ``n`` of a
profile is one lock, held by the worker's lock connection for as long as the
SMTP connection is open. A worker that dies loses its database connection
and with it every slot it held, so nothing needs cleaning up. SQLite has no
such locks; there the limit holds within each process.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from postroom.domain.db import transaction
from postroom.domain.models import Profile
from postroom.domain.usage import ProfileUsage

log = logging.getLogger("postroom.delivery")

_PERIODS = {
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "day": timedelta(days=1),
}

# Namespace of the connection-slot advisory locks: the first key is the
# profile's id, the second this base plus the slot number.
_SLOT_LOCK_BASE = 0x70720000


@dataclass(frozen=True)
class ProfileLimits:
    max_connections: int = 4
    pool_idle_timeout: float = 60.0
    per_second: int | None = None
    per_minute: int | None = None
    per_day: int | None = None
    max_recipients: int | None = None

    @classmethod
    def of(cls, profile: Profile) -> ProfileLimits:
        return cls(
            max_connections=profile.max_connections,
            pool_idle_timeout=profile.pool_idle_timeout,
            per_second=profile.max_messages_per_second,
            per_minute=profile.max_messages_per_minute,
            per_day=profile.max_messages_per_day,
            max_recipients=profile.max_recipients_per_message,
        )

    @property
    def rates(self) -> dict[str, int]:
        """The configured rate limits by period name."""
        values = {
            "second": self.per_second,
            "minute": self.per_minute,
            "day": self.per_day,
        }
        return {period: limit for period, limit in values.items() if limit}

    @property
    def smallest_rate(self) -> int | None:
        return min(self.rates.values(), default=None)


@dataclass(frozen=True)
class Grant:
    """Sends a reservation allowed; when none, ``retry_at`` is when to ask again."""

    granted: int
    retry_at: datetime | None = None


def window_start(period: str, now: datetime) -> datetime:
    if period == "second":
        return now.replace(microsecond=0)
    if period == "minute":
        return now.replace(second=0, microsecond=0)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def reserve_sends(
    sessions: sessionmaker[Session],
    profile_name: str,
    rates: dict[str, int],
    wanted: int,
    now: datetime,
) -> Grant:
    """Reserve up to ``wanted`` sends within every rate limit of the profile."""
    if not rates:
        return Grant(wanted)
    with transaction(sessions) as session:
        starts = {period: window_start(period, now) for period in rates}
        _ensure_rows(session, profile_name, starts)
        used: dict[str, int] = {}
        for period, start in starts.items():
            # The row lock serializes workers reserving for the same profile.
            used[period] = session.scalars(
                select(ProfileUsage.used)
                .where(
                    ProfileUsage.profile_name == profile_name,
                    ProfileUsage.period == period,
                    ProfileUsage.window_start == start,
                )
                .with_for_update()
            ).one()
        granted = min([wanted, *(rates[period] - used[period] for period in rates)])
        if granted <= 0:
            full = [period for period in rates if used[period] >= rates[period]]
            retry_at = max(starts[period] + _PERIODS[period] for period in full)
            return Grant(0, retry_at)
        full = [period for period in rates if used[period] + granted >= rates[period]]
        for period, start in starts.items():
            session.execute(
                update(ProfileUsage)
                .where(
                    ProfileUsage.profile_name == profile_name,
                    ProfileUsage.period == period,
                    ProfileUsage.window_start == start,
                )
                .values(used=ProfileUsage.used + granted)
            )
        if granted < wanted:
            return Grant(granted, max(starts[p] + _PERIODS[p] for p in full))
        return Grant(granted)


def _ensure_rows(
    session: Session, profile_name: str, starts: dict[str, datetime]
) -> None:
    insert = (
        postgresql.insert
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert
    )
    rows = [
        {
            "profile_name": profile_name,
            "period": period,
            "window_start": start,
            "used": 0,
        }
        for period, start in starts.items()
    ]
    session.execute(insert(ProfileUsage).values(rows).on_conflict_do_nothing())


def forget_old_usage(sessions: sessionmaker[Session], now: datetime) -> int:
    """Delete counts of windows that ended more than a day ago."""
    with transaction(sessions) as session:
        result = session.execute(
            delete(ProfileUsage).where(
                ProfileUsage.window_start < now - timedelta(days=2)
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


def libpq_connect_args(database_url: str | URL) -> dict[str, Any]:
    """Return the keyword arguments psycopg connects with for a SQLAlchemy URL.

    They are built as SQLAlchemy's psycopg dialect builds them, so that any
    URL its engine accepts works here too: escaped characters in the user
    or password, several hosts, libpq parameters in the query.
    """
    url = make_url(database_url).set(drivername="postgresql+psycopg")
    _args, kwargs = url.get_dialect()().create_connect_args(url)
    return dict(kwargs)


class ConnectionSlots:
    """Connection slots within this process only: the pool's own count suffices."""

    async def acquire(self, profile_id: int, limit: int) -> int | None:
        return 0

    async def release(self, profile_id: int, slot: int) -> None:
        return None

    async def close(self) -> None:
        return None


class PostgresConnectionSlots(ConnectionSlots):
    """Connection slots shared by every worker, as PostgreSQL advisory locks."""

    def __init__(self, database_url: str) -> None:
        self._connect_args = libpq_connect_args(database_url)
        self._connection: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._lock = asyncio.Lock()
        self._held: set[tuple[int, int]] = set()

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._connection is None or self._connection.closed:
            if self._held:
                # NOTE: the locks went with the lost connection, so until these
                # SMTP connections close, other workers may open more than the
                # profile's limit.
                log.warning(
                    "lost the connection-slot locks; taking them again",
                    extra={"slots": len(self._held)},
                )
            self._connection = await psycopg.AsyncConnection.connect(
                **self._connect_args, autocommit=True
            )
            for profile_id, slot in sorted(self._held):
                await self._try_lock(self._connection, profile_id, slot)
        return self._connection

    @staticmethod
    async def _try_lock(
        connection: psycopg.AsyncConnection[tuple[object, ...]],
        profile_id: int,
        slot: int,
    ) -> bool:
        cursor = await connection.execute(
            "SELECT pg_try_advisory_lock(%s, %s)",
            (profile_id, _SLOT_LOCK_BASE + slot),
        )
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def acquire(self, profile_id: int, limit: int) -> int | None:
        """Take a free slot below ``limit``; None when every one is taken."""
        async with self._lock:
            connection = await self._connect()
            for slot in range(limit):
                # Advisory locks are re-entrant per session, so a slot this
                # worker already holds must be skipped here, not by PostgreSQL.
                if (profile_id, slot) in self._held:
                    continue
                if await self._try_lock(connection, profile_id, slot):
                    self._held.add((profile_id, slot))
                    return slot
            return None

    async def release(self, profile_id: int, slot: int) -> None:
        async with self._lock:
            if (profile_id, slot) not in self._held:
                return
            self._held.discard((profile_id, slot))
            if self._connection is None or self._connection.closed:
                return
            try:
                await self._connection.execute(
                    "SELECT pg_advisory_unlock(%s, %s)",
                    (profile_id, _SLOT_LOCK_BASE + slot),
                )
            except psycopg.Error as exc:
                log.warning(
                    "could not release a connection slot; it is freed when the "
                    "lock connection closes",
                    extra={"error": str(exc)},
                )

    async def close(self) -> None:
        async with self._lock:
            self._held.clear()
            if self._connection is not None:
                await self._connection.close()
                self._connection = None
