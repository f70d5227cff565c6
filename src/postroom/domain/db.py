"""Engine and session setup, migrations and first-start data."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from postroom.domain.models import SYSTEM_PROFILE_NAMES, Profile

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# How long a SQLite statement waits for another connection's write lock.
_SQLITE_LOCK_WAIT_MS = 30000
_lock_wait_ms: ContextVar[int] = ContextVar(
    "postroom_sqlite_lock_wait_ms", default=_SQLITE_LOCK_WAIT_MS
)

# An arbitrary constant that identifies Postroom's migration lock among other
# PostgreSQL advisory locks on the same server.
_MIGRATION_LOCK_ID = 0x706F7374_726F6F6D % (2**31)


def normalize_database_url(url: str) -> str:
    """Select the psycopg 3 driver for plain PostgreSQL URLs.

    SQLAlchemy maps ``postgresql://`` to psycopg2, which Postroom does not
    install; users copy such URLs from everywhere, so accept them.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the CLI write while `postroom serve` reads; NORMAL is durable
    # across process crashes in WAL mode, which is the failure that matters
    # for a queue (a power cut may lose the last transactions).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_LOCK_WAIT_MS}")
    cursor.close()


def _set_sqlite_lock_wait(connection: Connection) -> None:
    timeout_ms = _lock_wait_ms.get()
    info = connection.connection.info
    if info.get("busy_timeout", _SQLITE_LOCK_WAIT_MS) != timeout_ms:
        # sqlite3 opens no transaction for a PRAGMA.
        connection.connection.dbapi_connection.execute(  # type: ignore[union-attr]
            f"PRAGMA busy_timeout={timeout_ms}"
        )
        info["busy_timeout"] = timeout_ms


@contextmanager
def sqlite_without_lock_wait() -> Iterator[None]:
    """Make SQLite transactions begun here fail at once on a locked database.

    Such a transaction raises an OperationalError that is_sqlite_locked()
    recognises, instead of waiting for the other writer.
    """
    token = _lock_wait_ms.set(0)
    try:
        yield
    finally:
        _lock_wait_ms.reset(token)


def is_sqlite_locked(exc: BaseException) -> bool:
    # Statements run on the DB-API cursor raise sqlite3's own error, which
    # SQLAlchemy wraps when it runs them.
    error = exc.orig if isinstance(exc, OperationalError) else exc
    return isinstance(error, sqlite3.OperationalError) and "database is locked" in str(
        error
    )


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _set_sqlite_pragmas)
        event.listen(engine, "begin", _set_sqlite_lock_wait)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


# A callable that opens a Session, as transaction() needs: a sessionmaker,
# or one with its bind given in advance.
SessionFactory = Callable[[], Session]


@contextmanager
def transaction(factory: SessionFactory) -> Iterator[Session]:
    """Open a session, commit on success and roll back on any error."""
    with factory() as session, session.begin():
        yield session


def _alembic_config(engine: Engine) -> Config:
    # Imported here: Alembic takes a noticeable share of the CLI's start time
    # and only matters when the schema is checked.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to call at every start."""
    from alembic import command

    config = _alembic_config(engine)
    if engine.dialect.name == "postgresql":
        # Several workers may start at once; the lock makes the others wait
        # until the first has finished migrating, then find nothing to do.
        with engine.connect() as connection:
            connection.execute(
                text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
            )
            try:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                connection.commit()
            finally:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID}
                )
                connection.commit()
    else:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")


def ensure_system_profiles(factory: sessionmaker[Session]) -> None:
    """Create the two system profiles if they are missing.

    They start without a server and so inactive: nothing is sent through
    them until an operator sets them up.
    """
    with transaction(factory) as session:
        existing = set(
            session.scalars(
                select(Profile.name).where(Profile.name.in_(SYSTEM_PROFILE_NAMES))
            )
        )
        for name in SYSTEM_PROFILE_NAMES:
            if name not in existing:
                session.add(Profile(name=name, is_system=True, is_active=False))
