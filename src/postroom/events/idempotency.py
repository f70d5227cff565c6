"""Idempotency keys: claim one for a request, or find the answer to an earlier one.

A key is claimed by inserting its row in the same transaction that records
the event and queues its messages. The key is the primary key, so a second
request that inserts the same key while the first transaction is still
open waits on PostgreSQL until the first commits or rolls back (SQLite lets
only one writer in at a time, which has the same effect). Then it either
finds the committed row and returns its answer, or, after a rollback,
claims the key itself. No request sees a half-recorded event.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from postroom.domain.notifications import IdempotencyKey

# Expired keys removed per transaction, so that a large backlog is cleared
# over several requests instead of slowing one down.
_PURGE_BATCH = 500


def set_lock_timeout(session: Session, seconds: float) -> None:
    """Bound how long this transaction waits for a racing request (PostgreSQL).

    Past the timeout PostgreSQL raises LockNotAvailable, which the caller
    turns into 409. SQLite waits up to its busy timeout instead.
    """
    if session.get_bind().dialect.name == "postgresql":
        milliseconds = max(int(seconds * 1000), 1)
        session.execute(text(f"SET LOCAL lock_timeout = {milliseconds}"))


def purge_expired(session: Session, now: datetime) -> None:
    """Delete keys past their retention.

    On SQLite this is also the transaction's first write, which takes the
    database's write lock before anything is read.
    """
    expired = (
        select(IdempotencyKey.key)
        .where(IdempotencyKey.expires_at < now)
        .limit(_PURGE_BATCH)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.key.in_(expired)))


def claim(
    session: Session, key: str, request_hash: str, now: datetime, expires_at: datetime
) -> bool:
    """Insert the key's row; return False when another request has claimed it."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(IdempotencyKey)
        .values(
            key=key,
            request_hash=request_hash,
            created_at=now,
            expires_at=expires_at,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(IdempotencyKey.key)
    )
    return session.execute(statement).first() is not None


def find(session: Session, key: str) -> IdempotencyKey | None:
    return session.get(IdempotencyKey, key, populate_existing=True)


def release_expired(session: Session, key: str, now: datetime) -> bool:
    """Delete the key's row if it has expired; return whether it was deleted."""
    result = session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.key == key, IdempotencyKey.expires_at < now
        )
    )
    return bool(getattr(result, "rowcount", 0))
