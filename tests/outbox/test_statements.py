"""The claim and outcome statements below the ORM, read back through the ORM."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError

from postroom.domain.db import (
    SessionFactory,
    is_sqlite_locked,
    transaction,
)
from postroom.domain.models import (
    DeliveryAttempt,
    MessageRecipient,
    MessageStatus,
    OutboxMessage,
    RecipientStatus,
)
from postroom.outbox import store
from postroom.outbox.dbcall import DatabaseCaller, PostgresConnection
from postroom.outbox.limits import libpq_connect_args
from postroom.outbox.statements import PostgresStatements
from postroom.outbox.store import Outcome, RecipientUpdate
from postroom.runtime import Runtime
from tests.outbox.helpers import add_profile, claim, queue

# A whole second: SQLite compares timestamps as text, so the statements
# must write ".000000" as SQLAlchemy does, or this one would sort wrong.
ROUND_SECOND = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)


def outcome_for(message_pk: int, recipient_ids: list[int]) -> Outcome:
    return Outcome(
        message_pk=message_pk,
        status=MessageStatus.QUEUED,
        attempt_number=1,
        started_at=datetime(2030, 5, 6, 7, 8, 1, 250000, tzinfo=UTC),
        duration_ms=37,
        step="rcpt_to",
        reply_code=451,
        enhanced_status="4.7.1",
        reply_text="4.7.1 Try again later, ünïcode ok",
        diagnosis={"id": "greylisted", "transient": True, "nested": [1, "two"]},
        recipients=[
            RecipientUpdate(
                recipient_ids[0], RecipientStatus.ACCEPTED, 250, "2.1.5", "2.1.5 Ok"
            ),
            RecipientUpdate(
                recipient_ids[1], RecipientStatus.DEFERRED, 451, "4.7.1", "later"
            ),
        ],
        next_attempt_at=ROUND_SECOND,
        sent_at=datetime(2030, 5, 6, 7, 8, 2, 999999, tzinfo=UTC),
        provider_queue_id="Q-42",
        last_error={"id": "greylisted", "cause": 'the server said "later"'},
    )


def record(runtime: Runtime, outcomes: list[Outcome], writer: str) -> None:
    """Record with the store function, or as the worker does: on its event
    loop and, on PostgreSQL, without SQLAlchemy."""
    if writer == "store":
        store.record_outcomes(runtime.sessions, outcomes, "worker-1")
        return

    async def main() -> None:
        caller = DatabaseCaller(runtime.engine, runtime.sessions)
        try:
            await caller.record_outcomes(outcomes, "worker-1")
        finally:
            await caller.close()

    asyncio.run(main())


@pytest.mark.parametrize("writer", ["store", "worker"])
def test_outcome_rows_read_back_unchanged(any_runtime: Runtime, writer: str) -> None:
    add_profile(any_runtime, 2525)
    message_pk = queue(any_runtime, to=["a@example.com", "b@example.com"])
    with any_runtime.sessions() as session:
        recipient_ids = list(
            session.scalars(
                select(MessageRecipient.id)
                .where(MessageRecipient.message_pk == message_pk)
                .order_by(MessageRecipient.id)
            )
        )

    record(any_runtime, [outcome_for(message_pk, recipient_ids)], writer)

    with any_runtime.sessions() as session:
        message = session.get(OutboxMessage, message_pk)
        assert message is not None
        assert message.status == MessageStatus.QUEUED
        assert message.attempt_count == 1
        assert message.next_attempt_at == ROUND_SECOND
        assert message.sent_at == datetime(2030, 5, 6, 7, 8, 2, 999999, tzinfo=UTC)
        assert message.provider_queue_id == "Q-42"
        assert message.last_error == {
            "id": "greylisted",
            "cause": 'the server said "later"',
        }
        assert message.lease_owner is None
        assert message.held_reason is None
        recipients = session.scalars(
            select(MessageRecipient)
            .where(MessageRecipient.message_pk == message_pk)
            .order_by(MessageRecipient.id)
        ).all()
        assert [
            (
                recipient.status,
                recipient.reply_code,
                recipient.enhanced_status,
                recipient.reply_text,
            )
            for recipient in recipients
        ] == [
            ("accepted", 250, "2.1.5", "2.1.5 Ok"),
            ("deferred", 451, "4.7.1", "later"),
        ]
        attempt = session.scalars(select(DeliveryAttempt)).one()
        assert attempt.message_pk == message_pk
        assert attempt.number == 1
        assert attempt.started_at == datetime(2030, 5, 6, 7, 8, 1, 250000, tzinfo=UTC)
        assert attempt.duration_ms == 37
        assert attempt.outcome == "deferred"
        assert attempt.step == "rcpt_to"
        assert attempt.reply_text == "4.7.1 Try again later, ünïcode ok"
        assert attempt.diagnosis == {
            "id": "greylisted",
            "transient": True,
            "nested": [1, "two"],
        }
        assert attempt.worker == "worker-1"


def queued_with_outcome(runtime: Runtime) -> tuple[int, int, Outcome]:
    """Queue a message to one recipient; return it, the recipient and an
    outcome for them."""
    add_profile(runtime, 2525)
    message_pk = queue(runtime)
    with runtime.sessions() as session:
        recipient_id = session.scalars(
            select(MessageRecipient.id).where(MessageRecipient.message_pk == message_pk)
        ).one()
    outcome = outcome_for(message_pk, [recipient_id, recipient_id])
    outcome.recipients = outcome.recipients[1:]
    return message_pk, recipient_id, outcome


@pytest.mark.parametrize("writer", ["store", "worker"])
def test_times_compare_alike_whoever_wrote_them(
    any_runtime: Runtime, writer: str
) -> None:
    recorded, recipient_id, outcome = queued_with_outcome(any_runtime)
    record(any_runtime, [outcome], writer)
    # Two more messages, their retry times written by the ORM: one due at
    # the same moment, one a microsecond later.
    same, later = queue(any_runtime), queue(any_runtime)
    with transaction(any_runtime.sessions) as session:
        for message_pk, due in (
            (same, ROUND_SECOND),
            (later, ROUND_SECOND + timedelta(microseconds=1)),
        ):
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_pk)
                .values(next_attempt_at=due)
            )

    assert _claim_at(any_runtime, ROUND_SECOND - timedelta(microseconds=1)) == []
    claimed = _claim_at(any_runtime, ROUND_SECOND)

    assert [message.id for message in claimed] == [recorded, same]
    first = claimed[0]
    assert [recipient.id for recipient in first.recipients] == [recipient_id]
    assert first.created_at.tzinfo is UTC
    assert first.sent_at == datetime(2030, 5, 6, 7, 8, 2, 999999, tzinfo=UTC)
    assert first.provider_queue_id == "Q-42"
    assert first.attempt_count == 1


@pytest.mark.parametrize("writer", ["store", "worker"])
def test_outcome_times_stored_in_utc(any_runtime: Runtime, writer: str) -> None:
    message_pk, _recipient_id, outcome = queued_with_outcome(any_runtime)
    plus_two = timezone(timedelta(hours=2))
    outcome.started_at = datetime(2030, 5, 6, 9, 8, 1, 250000, tzinfo=plus_two)
    outcome.next_attempt_at = datetime(2030, 5, 6, 9, 8, 9, tzinfo=plus_two)

    record(any_runtime, [outcome], writer)

    with any_runtime.sessions() as session:
        message = session.get(OutboxMessage, message_pk)
        attempt = session.scalars(select(DeliveryAttempt)).one()
    assert message is not None
    assert message.next_attempt_at == ROUND_SECOND
    assert attempt.started_at == datetime(2030, 5, 6, 7, 8, 1, 250000, tzinfo=UTC)


def _claim_at(runtime: Runtime, now: datetime) -> list[store.ClaimedMessage]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "utcnow", lambda: now)
        claimed, _profiles = store.claim_due(runtime.sessions, "worker-2", 10, 60)
    return claimed


@pytest.mark.parametrize("path", ["store", "worker"])
def test_claim_excludes_profiles_and_settled(any_runtime: Runtime, path: str) -> None:
    add_profile(any_runtime, 2525)
    add_profile(any_runtime, 2526, name="Reports")
    order = queue(any_runtime, to=["a@example.com", "b@example.com", "c@example.com"])
    queue(any_runtime, profile="Reports")
    with transaction(any_runtime.sessions) as session:
        first, second, _third = session.scalars(
            select(MessageRecipient.id)
            .where(MessageRecipient.message_pk == order)
            .order_by(MessageRecipient.id)
        ).all()
        for recipient_id, status in (
            (first, RecipientStatus.ACCEPTED),
            (second, RecipientStatus.FAILED),
        ):
            session.execute(
                update(MessageRecipient)
                .where(MessageRecipient.id == recipient_id)
                .values(status=status)
            )

    claimed, profiles = claim(any_runtime, path, exclude_profiles=["Reports"])

    assert [message.id for message in claimed] == [order]
    assert set(profiles) == {"Orders"}
    message = claimed[0]
    assert [recipient.address for recipient in message.recipients] == ["c@example.com"]
    assert (message.earlier_accepted, message.earlier_failed) == (1, 1)
    assert b"Parcel 42 is on its way." in message.raw
    assert message.smtputf8 is False


def test_engine_connections_commit_without_waiting(any_runtime: Runtime) -> None:
    if any_runtime.engine.dialect.name != "postgresql":
        pytest.skip("synchronous_commit is PostgreSQL's")

    async def engine_connection_settings() -> tuple[str, str]:
        connection = PostgresConnection(any_runtime.engine.url)
        try:
            [(commit,)] = await connection.execute("SHOW synchronous_commit")
            # In autocommit mode each statement is a transaction of its own,
            # with a transaction id of its own.
            [(first,)] = await connection.execute("SELECT txid_current()")
            [(second,)] = await connection.execute("SELECT txid_current()")
        finally:
            await connection.close()
        return commit, "autocommit" if first != second else "one transaction"

    def pool_settings(sessions: SessionFactory) -> tuple[str, str]:
        with transaction(sessions) as session:
            commit = session.execute(text("SHOW synchronous_commit")).scalar_one()
            first = session.execute(text("SELECT txid_current()")).scalar_one()
            second = session.execute(text("SELECT txid_current()")).scalar_one()
        return commit, "autocommit" if first != second else "one transaction"

    assert asyncio.run(engine_connection_settings()) == ("off", "autocommit")
    # Connections of the shared pool keep the server's defaults.
    assert pool_settings(any_runtime.sessions) == ("on", "one transaction")


@pytest.mark.parametrize(
    ("error", "locked"),
    [
        (sqlite3.OperationalError("database is locked"), True),
        (
            OperationalError(
                "UPDATE", {}, sqlite3.OperationalError("database is locked")
            ),
            True,
        ),
        (sqlite3.OperationalError("no such table: messages"), False),
        (RuntimeError("database is locked"), False),
    ],
)
def test_locked_sqlite_is_recognised_raw_or_wrapped(
    error: BaseException, locked: bool
) -> None:
    assert is_sqlite_locked(error) is locked


def test_engine_connections_keep_url_options(any_runtime: Runtime) -> None:
    if any_runtime.engine.dialect.name != "postgresql":
        pytest.skip("libpq options are PostgreSQL's")
    url = any_runtime.engine.url.update_query_dict(
        {"options": "-c application_name=postroom_options_test"}
    )

    async def settings() -> list[tuple[Any, ...]]:
        connection = PostgresConnection(url)
        try:
            return await connection.execute(
                "SELECT current_setting('application_name'), "
                "current_setting('synchronous_commit'), "
                "current_setting('enable_seqscan'), "
                "current_setting('plan_cache_mode')"
            )
        finally:
            await connection.close()

    assert asyncio.run(settings()) == [
        ("postroom_options_test", "off", "off", "force_generic_plan")
    ]


def test_engine_connections_keep_pgoptions(
    any_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    if any_runtime.engine.dialect.name != "postgresql":
        pytest.skip("PGOPTIONS is libpq's")
    monkeypatch.setenv("PGOPTIONS", "-c application_name=postroom_env_test")

    async def settings() -> list[tuple[Any, ...]]:
        connection = PostgresConnection(any_runtime.engine.url)
        try:
            return await connection.execute(
                "SELECT current_setting('application_name'), "
                "current_setting('synchronous_commit')"
            )
        finally:
            await connection.close()

    assert asyncio.run(settings()) == [("postroom_env_test", "off")]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg://us%20er:top%20secret@db.example:5433/mail",
            {
                "host": "db.example",
                "port": 5433,
                "user": "us er",
                "password": "top secret",
                "dbname": "mail",
            },
        ),
        (
            "postgresql://postroom@/mail?host=a.example:5432&host=b.example:5433",
            {
                "host": "a.example,b.example",
                "port": "5432,5433",
                "user": "postroom",
                "dbname": "mail",
            },
        ),
    ],
)
def test_libpq_arguments_from_any_engine_url(
    url: str, expected: dict[str, Any]
) -> None:
    # As a URI, a password with a space was rejected by libpq, in an error
    # that quoted the password, and only the last of several hosts was kept.
    assert libpq_connect_args(url) == expected


def test_engine_statements_plan_index_reads(
    any_runtime: Runtime,
) -> None:
    if any_runtime.engine.dialect.name != "postgresql":
        pytest.skip("the planner settings are PostgreSQL's")
    add_profile(any_runtime, 2525)
    message_pks = [queue(any_runtime) for _ in range(40)]
    with any_runtime.engine.connect() as connection:
        # A queue table's statistics are often stale, because it empties and
        # fills faster than autovacuum analyzes it. For a table this small
        # they are right, and reading the whole table looks cheapest.
        connection.execute(text("ANALYZE messages"))
        connection.execute(text("ANALYZE message_recipients"))
        connection.commit()
        recipient_ids = list(
            connection.execute(
                text("SELECT id FROM message_recipients ORDER BY id")
            ).scalars()
        )
    statements = PostgresStatements()
    now = datetime.now(UTC)
    outcomes = [
        outcome_for(message_pk, [recipient_id, recipient_id])
        for message_pk, recipient_id in zip(message_pks, recipient_ids, strict=True)
    ]

    async def explain() -> list[str]:
        # On the connections the worker claims and records with.
        connection = PostgresConnection(any_runtime.engine.url)
        plans = []
        try:
            for sql, parameters in (
                statements.claim_statement("w", 50, now, now, []),
                statements.recipients_statement(message_pks),
                statements.record_statement(outcomes, "w", now),
            ):
                rows = await connection.execute("EXPLAIN " + sql, parameters)
                plans.append("\n".join(row[0] for row in rows))
        finally:
            await connection.close()
        return plans

    claim, recipients, record = asyncio.run(explain())

    # The claim reads the due messages in order from the partial index and
    # stops after its limit, rather than reading and sorting them all.
    assert "Index Scan using ix_messages_due" in claim
    assert "Sort" not in claim
    assert "ix_message_recipients_message_pk" in recipients
    # Each outcome finds its rows by key, rather than reading the tables.
    assert "messages_pkey" in record
    assert "message_recipients_pkey" in record
    for plan in (claim, recipients, record):
        assert "Seq Scan on messages" not in plan
        assert "Seq Scan on message_recipients" not in plan
