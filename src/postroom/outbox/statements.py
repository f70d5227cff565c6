"""The delivery engine's claim and outcome statements, in each database's SQL.

A worker claims and records thousands of messages a second, and through
the ORM each row cost more Python time than sending the message did. These
statements run on the DB-API cursor of the session's connection, inside the
session's transaction: rows go in as tuples or arrays and come back as
tuples. SQLite takes a batch with executemany, which loops in C. PostgreSQL
takes it as arrays in one statement, one round trip whatever its size, and
psycopg prepares each statement once it has run a few times.

Values are stored the way the models' column types store them (see
domain/types.py), so the ORM reads them back unchanged: timestamps as naive
UTC (text in SQLite), JSON as its text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from postroom.domain.models import Profile

if TYPE_CHECKING:
    from postroom.outbox.store import Outcome

# The message columns a claim returns, in this order.
CLAIMED_COLUMNS = (
    "id, profile_name, message_id, envelope_sender, raw, smtputf8, "
    "attempt_count, created_at, sent_at, provider_queue_id"
)
# Named rather than "*": a column added to the table by a newer version's
# migration, while this worker runs, would change the result type of a
# statement that PostgreSQL had prepared, and fail it.
_PROFILE_COLUMNS = ", ".join(f'"{column.name}"' for column in Profile.__table__.columns)
# The status filter is written out, not bound, so that PostgreSQL can prove
# the partial index ix_messages_due applies even to a generic plan.
_DUE = "status IN ('queued', 'sending') AND next_attempt_at <= "


class Cursor(Protocol):
    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...

    def fetchall(self) -> Sequence[Sequence[Any]]: ...


class OutboxStatements(Protocol):
    def claim(
        self,
        cursor: Cursor,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_end: datetime,
        exclude_profiles: Sequence[str],
    ) -> list[tuple[Any, ...]]:
        """Lease up to ``limit`` due messages; return their CLAIMED_COLUMNS.

        Timestamps come back as aware UTC datetimes.
        """

    def recipients(
        self, cursor: Cursor, message_pks: Sequence[int]
    ) -> Sequence[Sequence[Any]]:
        """Return id, message_pk, address and status of the messages' recipients."""

    def profile_rows(
        self, cursor: Cursor, names: Sequence[str]
    ) -> Sequence[Sequence[Any]]:
        """Return the named profiles' rows: the name, then every mapped column."""

    def record(
        self, cursor: Cursor, outcomes: Sequence[Outcome], worker_id: str, now: datetime
    ) -> None:
        """Store the messages', recipients' and attempts' rows of the outcomes."""


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None)


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


class SqliteStatements:
    """SQLite 3.35 or newer, for RETURNING."""

    @staticmethod
    def _time(value: datetime | None) -> str | None:
        # SQLAlchemy's format for SQLite, which compares timestamps as text.
        naive = _naive_utc(value)
        return None if naive is None else naive.isoformat(" ", "microseconds")

    @staticmethod
    def _read_time(value: str | None) -> datetime | None:
        return (
            None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)
        )

    def claim(
        self,
        cursor: Cursor,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_end: datetime,
        exclude_profiles: Sequence[str],
    ) -> list[tuple[Any, ...]]:
        excluded = ""
        if exclude_profiles:
            marks = ", ".join("?" * len(exclude_profiles))
            excluded = f" AND profile_name NOT IN ({marks})"
        lease = self._time(lease_end)
        cursor.execute(
            "UPDATE messages SET status = 'sending', lease_owner = ?, "
            "lease_expires_at = ?, next_attempt_at = ?, updated_at = ? "
            f"WHERE id IN (SELECT id FROM messages WHERE {_DUE} ?{excluded} "
            f"ORDER BY next_attempt_at LIMIT ?) RETURNING {CLAIMED_COLUMNS}",
            (
                worker_id,
                lease,
                lease,
                self._time(now),
                self._time(now),
                *exclude_profiles,
                limit,
            ),
        )
        read = self._read_time
        return [
            (*row[:5], bool(row[5]), row[6], read(row[7]), read(row[8]), row[9])
            for row in cursor.fetchall()
        ]

    def recipients(
        self, cursor: Cursor, message_pks: Sequence[int]
    ) -> Sequence[Sequence[Any]]:
        marks = ", ".join("?" * len(message_pks))
        cursor.execute(
            "SELECT id, message_pk, address, status FROM message_recipients "
            f"WHERE message_pk IN ({marks}) ORDER BY id",
            tuple(message_pks),
        )
        return cursor.fetchall()

    def profile_rows(
        self, cursor: Cursor, names: Sequence[str]
    ) -> Sequence[Sequence[Any]]:
        marks = ", ".join("?" * len(names))
        cursor.execute(
            f"SELECT name, {_PROFILE_COLUMNS} FROM profiles WHERE name IN ({marks})",
            tuple(names),
        )
        return cursor.fetchall()

    def record(
        self, cursor: Cursor, outcomes: Sequence[Outcome], worker_id: str, now: datetime
    ) -> None:
        time = self._time
        stamp = time(now)
        cursor.executemany(
            "UPDATE messages SET status = ?, attempt_count = ?, next_attempt_at = ?, "
            "lease_owner = NULL, lease_expires_at = NULL, sent_at = ?, "
            "provider_queue_id = ?, last_error = ?, held_reason = ?, updated_at = ? "
            "WHERE id = ?",
            [
                (
                    str(outcome.status),
                    outcome.attempt_number,
                    time(outcome.next_attempt_at),
                    time(outcome.sent_at),
                    outcome.provider_queue_id,
                    _json(outcome.last_error),
                    outcome.held_reason,
                    stamp,
                    outcome.message_pk,
                )
                for outcome in outcomes
            ],
        )
        cursor.executemany(
            "UPDATE message_recipients SET status = ?, reply_code = ?, "
            "enhanced_status = ?, reply_text = ?, updated_at = ? WHERE id = ?",
            [
                (
                    str(recipient.status),
                    recipient.reply_code,
                    recipient.enhanced_status,
                    recipient.reply_text,
                    stamp,
                    recipient.id,
                )
                for outcome in outcomes
                for recipient in outcome.recipients
            ],
        )
        cursor.executemany(
            "INSERT INTO delivery_attempts (message_pk, number, started_at, "
            "duration_ms, outcome, step, reply_code, enhanced_status, reply_text, "
            "diagnosis, worker) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    outcome.message_pk,
                    outcome.attempt_number,
                    time(outcome.started_at),
                    outcome.duration_ms,
                    outcome.attempt_outcome,
                    outcome.step,
                    outcome.reply_code,
                    outcome.enhanced_status,
                    outcome.reply_text,
                    _json(outcome.diagnosis),
                    worker_id,
                )
                for outcome in outcomes
            ],
        )


# One statement and one parameter for a whole batch of outcomes: a JSON
# array with an object per outcome, which orjson writes in C. psycopg
# would dump a Python list as an array element by element in Python. The
# keys, also given as arrays, let the planner find the rows by index
# whatever it estimates the JSON holds.
_POSTGRES_RECORD = """
WITH outcome AS (
    SELECT * FROM json_to_recordset(%(outcomes)s::json) AS o(
        id int, status text, attempt int, next_attempt_at timestamp,
        sent_at timestamp, queue_id text, last_error json, held_reason text,
        started_at timestamp, duration_ms int, outcome text, step text,
        reply_code int, enhanced_status text, reply_text text, diagnosis json,
        recipients json)
), updated_messages AS (
    UPDATE messages SET status = o.status, attempt_count = o.attempt,
        next_attempt_at = o.next_attempt_at, lease_owner = NULL,
        lease_expires_at = NULL, sent_at = o.sent_at,
        provider_queue_id = o.queue_id, last_error = o.last_error,
        held_reason = o.held_reason, updated_at = %(now)s
    FROM outcome o
    WHERE messages.id = ANY(%(message_ids)s::int[]) AND messages.id = o.id
), updated_recipients AS (
    UPDATE message_recipients SET status = r.status, reply_code = r.reply_code,
        enhanced_status = r.enhanced_status, reply_text = r.reply_text,
        updated_at = %(now)s
    FROM outcome o, json_to_recordset(o.recipients) AS r(
        id int, status text, reply_code int, enhanced_status text, reply_text text)
    WHERE message_recipients.id = ANY(%(recipient_ids)s::int[])
        AND message_recipients.id = r.id
)
INSERT INTO delivery_attempts (message_pk, number, started_at, duration_ms,
    outcome, step, reply_code, enhanced_status, reply_text, diagnosis, worker)
SELECT id, attempt, started_at, duration_ms, outcome, step, reply_code,
    enhanced_status, reply_text, diagnosis, %(worker)s
FROM outcome
"""


def _int_array(values: Iterable[int]) -> str:
    """Write integers as an array literal, which the server parses in C."""
    return "{" + ",".join(map(str, values)) + "}"


def _utc(value: datetime | None) -> datetime | None:
    """Return the time in UTC, for orjson to write with its offset.

    PostgreSQL ignores the offset of a value read as ``timestamp``, so only
    a UTC time is read right.
    """
    if value is None or value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


class PostgresStatements:
    """Each statement also comes as its SQL and parameters, with a function
    for its rows, for connections that do not offer a DB-API cursor (see
    dbcall.py)."""

    def claim(
        self,
        cursor: Cursor,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_end: datetime,
        exclude_profiles: Sequence[str],
    ) -> list[tuple[Any, ...]]:
        cursor.execute(
            *self.claim_statement(worker_id, limit, now, lease_end, exclude_profiles)
        )
        return self.claimed_rows(cursor.fetchall())

    @staticmethod
    def claim_statement(
        worker_id: str,
        limit: int,
        now: datetime,
        lease_end: datetime,
        exclude_profiles: Sequence[str],
    ) -> tuple[str, dict[str, Any]]:
        # SKIP LOCKED: concurrent workers claim disjoint messages without
        # waiting for each other.
        return (
            "UPDATE messages SET status = 'sending', lease_owner = %(worker)s, "
            "lease_expires_at = %(lease)s, next_attempt_at = %(lease)s, "
            "updated_at = %(now)s WHERE id IN (SELECT id FROM messages "
            f"WHERE {_DUE} %(now)s AND profile_name <> ALL(%(excluded)s::text[]) "
            "ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
            f"RETURNING {CLAIMED_COLUMNS}",
            {
                "worker": worker_id,
                "lease": _naive_utc(lease_end),
                "now": _naive_utc(now),
                "excluded": list(exclude_profiles),
                "limit": limit,
            },
        )

    @staticmethod
    def claimed_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        return [
            (
                *row[:7],
                row[7].replace(tzinfo=UTC),
                None if row[8] is None else row[8].replace(tzinfo=UTC),
                row[9],
            )
            for row in rows
        ]

    def recipients(
        self, cursor: Cursor, message_pks: Sequence[int]
    ) -> Sequence[Sequence[Any]]:
        cursor.execute(*self.recipients_statement(message_pks))
        return self.recipient_rows(cursor.fetchall())

    @staticmethod
    def recipients_statement(message_pks: Sequence[int]) -> tuple[str, tuple[Any]]:
        return (
            "SELECT id, message_pk, address, status FROM message_recipients "
            "WHERE message_pk = ANY(%s::int[])",
            (list(message_pks),),
        )

    @staticmethod
    def recipient_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        # Sorted here: the engine's connections plan without sorts (see
        # dbcall.py), and ORDER BY id would read the whole primary key.
        return sorted(tuple(row) for row in rows)

    def profile_rows(
        self, cursor: Cursor, names: Sequence[str]
    ) -> Sequence[Sequence[Any]]:
        cursor.execute(*self.profile_rows_statement(names))
        return cursor.fetchall()

    @staticmethod
    def profile_rows_statement(names: Sequence[str]) -> tuple[str, tuple[Any]]:
        return (
            f"SELECT name, {_PROFILE_COLUMNS} FROM profiles "
            "WHERE name = ANY(%s::text[])",
            (list(names),),
        )

    def record(
        self, cursor: Cursor, outcomes: Sequence[Outcome], worker_id: str, now: datetime
    ) -> None:
        cursor.execute(*self.record_statement(outcomes, worker_id, now))

    def record_statement(
        self, outcomes: Sequence[Outcome], worker_id: str, now: datetime
    ) -> tuple[str, dict[str, Any]]:
        """Return the statement that records the outcomes, and its parameters."""
        document = [
            {
                "id": outcome.message_pk,
                "status": outcome.status,
                "attempt": outcome.attempt_number,
                "next_attempt_at": _utc(outcome.next_attempt_at),
                "sent_at": _utc(outcome.sent_at),
                "queue_id": outcome.provider_queue_id,
                "last_error": outcome.last_error,
                "held_reason": outcome.held_reason,
                "started_at": _utc(outcome.started_at),
                "duration_ms": outcome.duration_ms,
                "outcome": outcome.attempt_outcome,
                "step": outcome.step,
                "reply_code": outcome.reply_code,
                "enhanced_status": outcome.enhanced_status,
                "reply_text": outcome.reply_text,
                "diagnosis": outcome.diagnosis,
                "recipients": [
                    {
                        "id": recipient.id,
                        "status": recipient.status,
                        "reply_code": recipient.reply_code,
                        "enhanced_status": recipient.enhanced_status,
                        "reply_text": recipient.reply_text,
                    }
                    for recipient in outcome.recipients
                ],
            }
            for outcome in outcomes
        ]
        return (
            _POSTGRES_RECORD,
            {
                "outcomes": orjson.dumps(document).decode(),
                "message_ids": _int_array(outcome.message_pk for outcome in outcomes),
                "recipient_ids": _int_array(
                    recipient.id
                    for outcome in outcomes
                    for recipient in outcome.recipients
                ),
                "now": _naive_utc(now),
                "worker": worker_id,
            },
        )


POSTGRES = PostgresStatements()
SQLITE = SqliteStatements()


def statements_for(dialect: str) -> OutboxStatements:
    return POSTGRES if dialect == "postgresql" else SQLITE
