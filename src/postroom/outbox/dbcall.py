"""Run the delivery engine's frequent database calls where they cost least.

In a thread, a database call gives up the interpreter lock at every row
or network wait and then waits to get it back while the event loop is busy
sending. That made each claim and commit several times slower than the
work in it, so the engine keeps these calls on the event loop:

- SQLite runs in this process and its calls are CPU work, a few
  milliseconds per batch of ordinary messages, run directly over a
  connection of their own. They do not wait there for another writer's
  lock: a locked database moves the call to a thread and the shared pool,
  where it waits as usual.
- PostgreSQL claims and outcome commits run their statements on psycopg
  asyncio connections of the engine's own (PostgresConnection), one for
  each, so that a claim need not wait for a commit. Each network wait lets
  the loop send meanwhile. These connections run in autocommit mode, with
  commits that do not wait for the disk (see store.py): a batch of
  outcomes is one statement and one round trip, with no BEGIN, SET or
  COMMIT around it, and every statement must leave the database
  consistent on its own. Through SQLAlchemy's asyncio engine, its
  greenlet, Session and cursor adapter had cost the engine about a fifth
  more CPU time per message in the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from sqlalchemy import URL, Engine
from sqlalchemy.orm import Session, sessionmaker

from postroom.clock import utcnow
from postroom.domain.db import (
    SessionFactory,
    create_db_engine,
    is_sqlite_locked,
    session_factory,
    sqlite_without_lock_wait,
)
from postroom.domain.models import Profile
from postroom.outbox import store
from postroom.outbox.limits import libpq_connect_args
from postroom.outbox.statements import POSTGRES

P = ParamSpec("P")
T = TypeVar("T")
StoreFunction = Callable[Concatenate[SessionFactory, P], T]


class DatabaseCaller:
    """Claims and outcome commits for one worker, and a runner for store
    functions, which take a session factory first."""

    def __init__(self, engine: Engine, sessions: sessionmaker[Session]) -> None:
        self._engine = engine
        self._sessions = sessions
        # The loop's own SQLite connection. Calls on the loop run one after
        # another, so one connection is enough. API threads waiting on a lock
        # can hold the whole shared pool, which would stall the loop.
        self._loop_engine: Engine | None = None
        self._loop_sessions: sessionmaker[Session] | None = None
        self._claim_connection: PostgresConnection | None = None
        self._outcome_connection: PostgresConnection | None = None
        if engine.dialect.name == "postgresql":
            self._claim_connection = PostgresConnection(engine.url)
            self._outcome_connection = PostgresConnection(engine.url)

    async def claim_due(
        self,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        exclude_profiles: list[str],
        profile_cache: store.ProfileCache,
    ) -> tuple[list[store.ClaimedMessage], dict[str, Profile]]:
        """Claim due messages as ``store.claim_due`` does."""
        connection = self._claim_connection
        if connection is None:
            return await self(
                store.claim_due,
                worker_id,
                limit,
                lease_seconds,
                exclude_profiles=exclude_profiles,
                profile_cache=profile_cache,
            )
        now = utcnow()
        lease_end = now + timedelta(seconds=lease_seconds)
        rows = POSTGRES.claimed_rows(
            await connection.execute(
                *POSTGRES.claim_statement(
                    worker_id, limit, now, lease_end, exclude_profiles
                )
            )
        )
        if not rows:
            return [], {}
        try:
            return await self._claimed(
                worker_id, rows, now, lease_seconds, profile_cache
            )
        except BaseException:
            # The claim's UPDATE has committed on its own. Give the messages
            # back rather than leave them leased, and unsent, until the
            # lease ends. If that fails too, the lease ending does it.
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    asyncio.to_thread(
                        store.release,
                        self._sessions,
                        [row[0] for row in rows],
                        None,
                        worker_id,
                    )
                )
            raise

    async def _claimed(
        self,
        worker_id: str,
        rows: list[tuple[Any, ...]],
        now: datetime,
        lease_seconds: float,
        profile_cache: store.ProfileCache,
    ) -> tuple[list[store.ClaimedMessage], dict[str, Profile]]:
        """Finish a claim: read its recipients and profiles, hold what
        cannot be sent."""
        connection = self._claim_connection
        assert connection is not None
        recipient_rows = POSTGRES.recipient_rows(
            await connection.execute(
                *POSTGRES.recipients_statement([row[0] for row in rows])
            )
        )
        messages = store.claimed_messages(
            rows, recipient_rows, now + timedelta(seconds=lease_seconds / 2)
        )

        names = {message.profile_name for message in messages}
        profiles, stale = profile_cache.match(
            await connection.execute(*POSTGRES.profile_rows_statement(sorted(names))),
            names,
        )
        if stale:
            # Rare: the first claim of a worker, or after a profile changed.
            loaded = await asyncio.to_thread(
                store.load_profiles, self._sessions, list(stale)
            )
            profile_cache.keep(loaded, stale)
            profiles.update((profile.name, profile) for profile in loaded)

        sendable, held_by_profile = store.sort_out_held(messages, profiles)
        for name, message_pks in held_by_profile.items():
            await asyncio.to_thread(
                store.hold_claimed, self._sessions, message_pks, name, worker_id
            )
        return sendable, profiles

    async def record_outcomes(
        self, outcomes: list[store.Outcome], worker_id: str
    ) -> None:
        """Commit a batch of outcomes in one transaction."""
        if self._outcome_connection is None:
            await self(store.record_outcomes, outcomes, worker_id)
        elif outcomes:
            await self._outcome_connection.execute(
                *POSTGRES.record_statement(outcomes, worker_id, utcnow())
            )

    async def __call__(
        self, function: StoreFunction[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a store function, on the loop for SQLite and in a thread for
        PostgreSQL.

        The function must do its work in one transaction, because on a
        locked SQLite database it is rolled back and run again in a thread.
        """
        if self._engine.dialect.name != "sqlite":
            return await asyncio.to_thread(function, self._sessions, *args, **kwargs)
        if self._loop_sessions is None and self._engine.url.database in (
            None,
            "",
            ":memory:",
        ):
            # Another engine would open another, empty, in-memory database.
            self._loop_sessions = self._sessions
        if self._loop_sessions is None:
            self._loop_engine = create_db_engine(
                self._engine.url.render_as_string(hide_password=False),
                pool_size=1,
                max_overflow=0,
            )
            self._loop_sessions = session_factory(self._loop_engine)
        try:
            with sqlite_without_lock_wait():
                return function(self._loop_sessions, *args, **kwargs)
        except Exception as exc:
            # The whole transaction was rolled back, so it can run again.
            if not is_sqlite_locked(exc):
                raise
        return await asyncio.to_thread(function, self._sessions, *args, **kwargs)

    async def close(self) -> None:
        for connection in (self._claim_connection, self._outcome_connection):
            if connection is not None:
                await connection.close()
        if self._loop_engine is not None:
            self._loop_engine.dispose()
            self._loop_engine = None
            self._loop_sessions = None


# Set on each of the engine's connections once it is open. SET rather than
# the connection's "options", which would replace options set in the URL
# or in PGOPTIONS.
#
# Commits do not wait for the disk: see store.py for why that loses no
# message. And every statement finds its rows through an index: the claim
# reads the due messages in order from ix_messages_due and stops at its
# limit, and outcomes find their rows by key. Outbox tables fill and empty
# faster than autovacuum analyzes them, and with statistics from a nearly
# empty table the planner would read and sort every due message on each
# claim, or read all recipients on each commit. Generic plans also spare
# planning each statement again.
_SESSION_SETTINGS = (
    "SET synchronous_commit = off; "
    "SET plan_cache_mode = force_generic_plan; "
    "SET enable_seqscan = off; "
    "SET enable_bitmapscan = off; "
    "SET enable_sort = off"
)


class PostgresConnection:
    """A psycopg asyncio connection of the engine's own, without SQLAlchemy.

    It runs in autocommit mode, with _SESSION_SETTINGS. It is opened on
    first use and kept, with no liveness check, which would cost a round
    trip per statement. A statement that fails closes it, so the next one
    opens a new connection. Statements run one at a time, because psycopg
    serializes the operations of a connection.

    NOTE: no statement timeout or TCP keepalive is set. A server that stops
    responding without closing the connection blocks a statement until the
    operating system gives up on the TCP connection.
    """

    def __init__(self, url: URL) -> None:
        self._connect_args = libpq_connect_args(url)
        self._connection: psycopg.AsyncConnection[tuple[Any, ...]] | None = None

    async def execute(self, sql: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement; return its rows, if it returns any."""
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._open()
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(sql, parameters)
                return await cursor.fetchall() if cursor.description else []
        except BaseException:
            # A failed or cancelled statement leaves the connection in an
            # unknown state.
            self._connection = None
            await _close_quietly(connection)
            raise

    async def _open(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        connection = await psycopg.AsyncConnection.connect(
            **self._connect_args, autocommit=True
        )
        try:
            await connection.execute(_SESSION_SETTINGS)
        except BaseException:
            await _close_quietly(connection)
            raise
        self._connection = connection
        return connection

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()


async def _close_quietly(connection: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
    """Close a connection after an error, which is the one to raise."""
    with contextlib.suppress(Exception):
        await asyncio.shield(connection.close())
