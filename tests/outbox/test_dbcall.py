"""Where the engine runs its frequent database calls, and what a lock does."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from postroom.domain.db import transaction
from postroom.outbox.dbcall import DatabaseCaller, PostgresConnection
from postroom.runtime import Runtime


def write_note(sessions: sessionmaker[Session], calls: list[int]) -> int:
    calls.append(threading.get_ident())
    with transaction(sessions) as session:
        session.execute(
            text("UPDATE profiles SET client = 'touched' WHERE name = :name"),
            {"name": "DefaultDeliveryProfile"},
        )
    return len(calls)


class Ticker:
    """A counter of 10 ms event loop turns, to show the loop was not blocked."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1


def stored_note(runtime: Runtime) -> str | None:
    with transaction(runtime.sessions) as session:
        return session.execute(
            text("SELECT client FROM profiles WHERE name = 'DefaultDeliveryProfile'")
        ).scalar_one_or_none()


def test_sqlite_calls_run_on_loop(runtime: Runtime) -> None:
    calls: list[int] = []

    async def main() -> int:
        return await DatabaseCaller(runtime.engine, runtime.sessions)(write_note, calls)

    asyncio.run(main())

    assert calls == [threading.get_ident()]
    assert stored_note(runtime) == "touched"


def test_locked_sqlite_moves_to_thread(
    runtime: Runtime,
) -> None:
    path = make_url(runtime.settings.effective_database_url).database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    calls: list[int] = []
    ticker = Ticker()

    async def main() -> None:
        ticking = asyncio.create_task(ticker.run())
        call = asyncio.create_task(
            DatabaseCaller(runtime.engine, runtime.sessions)(write_note, calls)
        )
        await asyncio.sleep(0.3)
        # The loop kept running while the call waited for the lock.
        assert ticker.ticks >= 10
        assert not call.done()
        other.execute("COMMIT")
        await call
        ticking.cancel()

    try:
        asyncio.run(main())
    finally:
        other.close()

    assert len(calls) == 2
    assert calls[0] == threading.get_ident()
    assert calls[1] != threading.get_ident()
    assert stored_note(runtime) == "touched"


def test_other_sqlite_errors_not_retried(runtime: Runtime) -> None:
    calls: list[int] = []

    def broken(sessions: sessionmaker[Session]) -> None:
        calls.append(1)
        with transaction(sessions) as session:
            session.execute(text("UPDATE no_such_table SET x = 1"))

    async def main() -> None:
        await DatabaseCaller(runtime.engine, runtime.sessions)(broken)

    with pytest.raises(Exception, match="no_such_table"):
        asyncio.run(main())
    assert calls == [1]


def test_postgresql_waits_free_the_loop(pg_runtime: Runtime) -> None:
    ticker = Ticker()

    async def main() -> None:
        ticking = asyncio.create_task(ticker.run())
        connection = PostgresConnection(pg_runtime.engine.url)
        try:
            await connection.execute("SELECT pg_sleep(0.3)")
        finally:
            await connection.close()
            ticking.cancel()

    asyncio.run(main())

    # The loop went on while PostgreSQL slept.
    assert ticker.ticks >= 10


def test_loop_calls_skip_an_exhausted_pool(runtime: Runtime) -> None:
    # API threads waiting on a lock can hold every pooled connection; the
    # loop's calls have a connection of their own and go on.
    pool_size = runtime.engine.pool.size() + runtime.engine.pool._max_overflow  # type: ignore[attr-defined]
    checked_out = [runtime.engine.connect() for _ in range(pool_size)]
    calls: list[int] = []
    caller = DatabaseCaller(runtime.engine, runtime.sessions)

    async def main() -> None:
        try:
            await caller(write_note, calls)
        finally:
            await caller.close()

    started = time.monotonic()
    try:
        asyncio.run(main())
    finally:
        for connection in checked_out:
            connection.close()

    assert time.monotonic() - started < 5
    assert calls == [threading.get_ident()]
    assert stored_note(runtime) == "touched"


def test_postgres_connection_reopened_after_drop(pg_runtime: Runtime) -> None:
    async def main() -> tuple[int, int, int]:
        connection = PostgresConnection(pg_runtime.engine.url)
        try:
            [(first,)] = await connection.execute("SELECT pg_backend_pid()")
            [(second,)] = await connection.execute("SELECT pg_backend_pid()")
            with pg_runtime.engine.connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            with pytest.raises(psycopg.OperationalError):
                await connection.execute("SELECT pg_backend_pid()")
            [(third,)] = await connection.execute("SELECT pg_backend_pid()")
        finally:
            await connection.close()
        return first, second, third

    first, second, third = asyncio.run(main())

    # Kept between statements. After the server dropped it, the failed
    # statement closed it and the next one opened another.
    assert first == second
    assert third != first
