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
- PostgreSQL calls go through SQLAlchemy's asyncio engine on psycopg's
  asyncio connection. The same synchronous store functions run on the loop,
  and each network wait lets the loop send meanwhile. These connections
  are the engine's own and run in autocommit mode, with commits that do
  not wait for the disk (see store.py). Every statement the store
  functions run here must therefore leave the database consistent on its
  own. A connection is kept from one call to the next, and goes back to
  the pool only when a call fails.
- PostgreSQL outcome commits, the most frequent call, skip SQLAlchemy:
  the statement runs on a psycopg asyncio connection with the same
  settings (PostgresConnection). A batch of outcomes is one statement and
  one round trip, with no BEGIN, SET or COMMIT around it. Without
  SQLAlchemy's greenlet, Session and cursor adapter, the engine used
  about a tenth less CPU time per message in the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from sqlalchemy import URL, Connection, Engine, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from postroom.clock import utcnow
from postroom.domain.db import (
    SYNCHRONOUS_COMMIT_OFF,
    SessionFactory,
    create_db_engine,
    is_sqlite_locked,
    session_factory,
    sqlite_without_lock_wait,
)
from postroom.outbox import store
from postroom.outbox.limits import libpq_url
from postroom.outbox.statements import POSTGRES

P = ParamSpec("P")
T = TypeVar("T")
StoreFunction = Callable[Concatenate[SessionFactory, P], T]


class DatabaseCaller:
    """A runner for store functions, which take a session factory first.

    A function run here must do its work in one transaction: on a locked
    SQLite database it is rolled back and run again in a thread.
    """

    def __init__(self, engine: Engine, sessions: sessionmaker[Session]) -> None:
        self._engine = engine
        self._sessions = sessions
        self._async_engine: AsyncEngine | None = None
        # Made once: each sessionmaker defines a Session subclass, which
        # costs more than the statements of a typical batch.
        self._unbound_sessions = sessionmaker(expire_on_commit=False)
        # The loop's own SQLite connection. Calls on the loop run one after
        # another, so one connection is enough. API threads waiting on a lock
        # can hold the whole shared pool, which would stall the loop.
        self._loop_engine: Engine | None = None
        self._loop_sessions: sessionmaker[Session] | None = None
        # PostgreSQL connections kept between calls. Taking one from the pool
        # and giving it back cost a third of a small call's CPU time.
        self._idle: list[AsyncConnection] = []
        # Made with the engine, on the loop that uses them.
        self._connections: asyncio.Semaphore | None = None
        self._outcome_connection = (
            PostgresConnection(engine.url)
            if engine.dialect.name == "postgresql"
            else None
        )

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
        if self._engine.dialect.name == "postgresql":
            return await self._on_async_connection(function, *args, **kwargs)
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

    async def _on_async_connection(
        self, function: StoreFunction[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self._async_engine is None or self._connections is None:
            self._async_engine = _autocommit_engine(self._engine)
            self._connections = asyncio.Semaphore(_ASYNC_POOL_SIZE)
        engine = self._async_engine

        def run(connection: Connection) -> T:
            return function(
                partial(self._unbound_sessions, bind=connection), *args, **kwargs
            )

        # No more calls at once than the pool has connections, because a call
        # waiting for the pool would wait for a connection kept here.
        async with self._connections:
            connection = self._idle.pop() if self._idle else await engine.connect()
            try:
                result = await connection.run_sync(run)
            except BaseException:
                # Back to the pool, which resets the connection or, if it
                # broke, discards it and opens another for the next call.
                # The call's own error is the one to raise.
                with contextlib.suppress(Exception):
                    await asyncio.shield(connection.close())
                raise
            if self._async_engine is engine:
                self._idle.append(connection)
            else:
                # close() ran meanwhile and disposed of the engine.
                await connection.close()
            return result

    async def close(self) -> None:
        if self._outcome_connection is not None:
            await self._outcome_connection.close()
        while self._idle:
            await self._idle.pop().close()
        if self._async_engine is not None:
            await self._async_engine.dispose()
            self._async_engine = None
            self._connections = None
        if self._loop_engine is not None:
            self._loop_engine.dispose()
            self._loop_engine = None
            self._loop_sessions = None


# Every statement on these connections finds its rows through an index: the
# claim reads the due messages in order from ix_messages_due and stops at its
# limit, and outcomes find their rows by key. Outbox tables fill and empty
# faster than autovacuum analyzes them, and with statistics from a nearly
# empty table the planner would read and sort every due message on each
# claim, or read all recipients on each commit. Generic plans also spare
# planning each statement again.
_INDEX_ONLY_PLANS = (
    "-c plan_cache_mode=force_generic_plan",
    "-c enable_seqscan=off",
    "-c enable_bitmapscan=off",
    "-c enable_sort=off",
)


# For claims, which a worker runs one at a time. Outcome commits have a
# connection of their own.
_ASYNC_POOL_SIZE = 1


def _engine_options(url: URL) -> str:
    """Return the libpq options of the engine's own connections.

    Options set in the database URL come first, then this module's.
    """
    configured = url.query.get("options", ())
    return " ".join(
        [
            *((configured,) if isinstance(configured, str) else configured),
            "-c synchronous_commit=off",
            *_INDEX_ONLY_PLANS,
        ]
    )


def _autocommit_engine(engine: Engine) -> AsyncEngine:
    # No pre-ping: it would cost a round trip per call. A connection that
    # died since its last use fails its call, which the recorder and the
    # claim loop retry, and the pool replaces it.
    async_engine = create_async_engine(
        engine.url.difference_update_query(["options"]),
        pool_size=_ASYNC_POOL_SIZE,
        max_overflow=0,
        isolation_level="AUTOCOMMIT",
        connect_args={"options": _engine_options(engine.url)},
    )

    def mark(_dbapi_connection: object, record: ConnectionPoolEntry) -> None:
        record.info[SYNCHRONOUS_COMMIT_OFF] = True

    event.listen(async_engine.sync_engine, "connect", mark)
    return async_engine


class PostgresConnection:
    """A psycopg asyncio connection of the engine's own, without SQLAlchemy.

    It has the settings of the engine's other connections: autocommit,
    commits that do not wait for the disk, index-only plans. It is opened
    on first use and kept. A statement that fails closes it, so the next
    one opens a new connection, as the pool does for the others. Statements
    run one at a time: psycopg serializes the operations of a connection.
    """

    def __init__(self, url: URL) -> None:
        self._conninfo = libpq_url(
            url.difference_update_query(["options"]).render_as_string(
                hide_password=False
            )
        )
        self._options = _engine_options(url)
        self._connection: psycopg.AsyncConnection[tuple[Any, ...]] | None = None

    async def execute(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement; return its rows, if it returns any."""
        connection = self._connection
        if connection is None or connection.closed:
            connection = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, options=self._options
            )
            self._connection = connection
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(sql, parameters)
                return await cursor.fetchall() if cursor.description else []
        except BaseException:
            # A failed or cancelled statement leaves the connection in an
            # unknown state. The statement's own error is the one to raise.
            self._connection = None
            with contextlib.suppress(Exception):
                await asyncio.shield(connection.close())
            raise

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()
