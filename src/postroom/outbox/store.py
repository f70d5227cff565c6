"""The outbox's database side: claim due messages under a lease, record results.

A claim is one UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING
statement. On PostgreSQL the SELECT takes its rows FOR UPDATE SKIP LOCKED,
so concurrent workers claim disjoint messages without waiting on each other;
SQLite serializes writers, which has the same effect in one file.

A claimed message has status ``sending`` and ``next_attempt_at`` set to the
end of its lease. If the worker dies, the lease runs out and the message is
due again, so the same query picks it up: nothing is lost, and at worst a
message the provider had already accepted is sent once more with the same
Message-ID.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from postroom.clock import utcnow
from postroom.domain.db import transaction
from postroom.domain.models import (
    DeliveryAttempt,
    MessageRecipient,
    MessageStatus,
    OutboxMessage,
    Profile,
    RecipientStatus,
)
from postroom.domain.profiles import hold_reason

_RETRYABLE_RECIPIENTS = (RecipientStatus.PENDING, RecipientStatus.DEFERRED)
_DUE_STATUSES = text("messages.status IN ('queued', 'sending')")


@dataclass
class ClaimedRecipient:
    id: int
    address: str


@dataclass
class ClaimedMessage:
    id: int
    profile_name: str
    message_id: str
    envelope_sender: str
    raw: bytes
    smtputf8: bool
    attempt_count: int
    created_at: datetime
    # From earlier attempts that reached some recipients; kept unless this
    # attempt reaches more.
    sent_at: datetime | None = None
    provider_queue_id: str | None = None
    # Only the recipients still to be tried.
    recipients: list[ClaimedRecipient] = field(default_factory=list)
    # Recipients settled by earlier attempts, for the final status.
    earlier_accepted: int = 0
    earlier_failed: int = 0
    # Sending must start by then, half way through the lease, so that it
    # ends before another worker may take the message over.
    start_by: datetime | None = None


@dataclass
class RecipientUpdate:
    id: int
    status: RecipientStatus
    reply_code: int | None
    enhanced_status: str | None
    reply_text: str | None


@dataclass
class Outcome:
    """Everything one attempt changes in the database for one message."""

    message_pk: int
    status: MessageStatus
    attempt_number: int
    started_at: datetime
    duration_ms: int
    step: str | None
    reply_code: int | None
    enhanced_status: str | None
    reply_text: str | None
    diagnosis: dict[str, Any] | None
    recipients: list[RecipientUpdate]
    next_attempt_at: datetime
    sent_at: datetime | None = None
    provider_queue_id: str | None = None
    last_error: dict[str, Any] | None = None
    # Set with status HELD: why the profile cannot send until it changes.
    held_reason: str | None = None

    @property
    def attempt_outcome(self) -> str:
        if self.status == MessageStatus.QUEUED:
            return "deferred"
        return str(self.status)


def _commit_without_waiting_for_disk(session: Session) -> None:
    """Let PostgreSQL commit this transaction before its WAL reaches the disk.

    For claims and outcomes only, never for queueing. A worker that dies
    after the commit keeps what it wrote, which is what at-least-once
    delivery rests on. Only a crash of the PostgreSQL server itself can lose
    the last fraction of a second of such commits: a lost claim leaves the
    message queued, a lost outcome has it sent again. Neither loses a
    message, and not waiting for the disk on every batch keeps sending fast.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))


def claim_due(
    sessions: sessionmaker[Session],
    worker_id: str,
    limit: int,
    lease_seconds: float,
    profile_names: list[str] | None = None,
    exclude_profiles: list[str] | None = None,
) -> tuple[list[ClaimedMessage], dict[str, Profile]]:
    """Claim up to ``limit`` due messages; hold those whose profile cannot send.

    ``exclude_profiles`` names profiles this worker cannot send for now (a
    rate limit reached), whose messages stay for other workers or later.

    Returns the claimed messages and the profiles they need, by name.
    """
    with transaction(sessions) as session:
        _commit_without_waiting_for_disk(session)
        now = utcnow()
        lease_end = now + timedelta(seconds=lease_seconds)
        due = (
            select(OutboxMessage.id)
            .where(
                # Written out, not bound, so that PostgreSQL can prove the
                # partial index ix_messages_due applies even to a generic plan.
                _DUE_STATUSES,
                OutboxMessage.next_attempt_at <= now,
            )
            .order_by(OutboxMessage.next_attempt_at)
            .limit(limit)
        )
        if profile_names is not None:
            due = due.where(OutboxMessage.profile_name.in_(profile_names))
        if exclude_profiles:
            due = due.where(OutboxMessage.profile_name.not_in(exclude_profiles))
        if session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        claimed_ids = list(
            session.scalars(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(due.scalar_subquery()))
                .values(
                    status=MessageStatus.SENDING,
                    lease_owner=worker_id,
                    lease_expires_at=lease_end,
                    next_attempt_at=lease_end,
                )
                .returning(OutboxMessage.id)
                .execution_options(synchronize_session=False)
            )
        )
        if not claimed_ids:
            return [], {}

        messages = _load_claimed(session, claimed_ids)
        start_by = now + timedelta(seconds=lease_seconds / 2)
        for message in messages:
            message.start_by = start_by
        names = {message.profile_name for message in messages}
        profiles = {
            profile.name: profile
            for profile in session.scalars(
                select(Profile).where(Profile.name.in_(names))
            )
        }
        sendable = []
        for message in messages:
            reason = hold_reason(
                profiles.get(message.profile_name), message.profile_name
            )
            if reason is None:
                sendable.append(message)
            else:
                _hold(session, message.id, reason)
        return sendable, profiles


def _load_claimed(session: Session, ids: list[int]) -> list[ClaimedMessage]:
    rows = session.execute(
        select(
            OutboxMessage.id,
            OutboxMessage.profile_name,
            OutboxMessage.message_id,
            OutboxMessage.envelope_sender,
            OutboxMessage.raw,
            OutboxMessage.smtputf8,
            OutboxMessage.attempt_count,
            OutboxMessage.created_at,
            OutboxMessage.sent_at,
            OutboxMessage.provider_queue_id,
        )
        .where(OutboxMessage.id.in_(ids))
        .order_by(OutboxMessage.id)
    )
    messages = {
        row.id: ClaimedMessage(
            id=row.id,
            profile_name=row.profile_name,
            message_id=row.message_id,
            envelope_sender=row.envelope_sender,
            raw=row.raw,
            smtputf8=row.smtputf8,
            attempt_count=row.attempt_count,
            created_at=row.created_at,
            sent_at=row.sent_at,
            provider_queue_id=row.provider_queue_id,
        )
        for row in rows
    }
    recipient_rows = session.execute(
        select(
            MessageRecipient.id,
            MessageRecipient.message_pk,
            MessageRecipient.address,
            MessageRecipient.status,
        )
        .where(MessageRecipient.message_pk.in_(ids))
        .order_by(MessageRecipient.id)
    )
    for row in recipient_rows:
        message = messages[row.message_pk]
        if row.status in _RETRYABLE_RECIPIENTS:
            message.recipients.append(ClaimedRecipient(row.id, row.address))
        elif row.status == RecipientStatus.ACCEPTED:
            message.earlier_accepted += 1
        else:
            message.earlier_failed += 1
    return list(messages.values())


def hold(sessions: sessionmaker[Session], message_pks: list[int], reason: str) -> None:
    with transaction(sessions) as session:
        for message_pk in message_pks:
            _hold(session, message_pk, reason)


def _hold(session: Session, message_pk: int, reason: str) -> None:
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_pk)
        .values(
            status=MessageStatus.HELD,
            held_reason=reason,
            lease_owner=None,
            lease_expires_at=None,
            next_attempt_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )


_MESSAGES = cast(Table, OutboxMessage.__table__)
_RECIPIENTS = cast(Table, MessageRecipient.__table__)
_ATTEMPTS = cast(Table, DeliveryAttempt.__table__)

# Core statements run with executemany: a batch of outcomes costs three
# round trips, whatever its size. Bound names differ from column names, as
# SQLAlchemy requires for UPDATE ... SET from parameters.
_UPDATE_MESSAGE = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("p_id"))
    .values(
        status=bindparam("p_status"),
        attempt_count=bindparam("p_attempt_count"),
        next_attempt_at=bindparam("p_next_attempt_at"),
        lease_owner=None,
        lease_expires_at=None,
        sent_at=bindparam("p_sent_at"),
        provider_queue_id=bindparam("p_provider_queue_id"),
        last_error=bindparam("p_last_error"),
        held_reason=bindparam("p_held_reason"),
        updated_at=bindparam("p_updated_at"),
    )
)
_UPDATE_RECIPIENT = (
    update(_RECIPIENTS)
    .where(_RECIPIENTS.c.id == bindparam("p_id"))
    .values(
        status=bindparam("p_status"),
        reply_code=bindparam("p_reply_code"),
        enhanced_status=bindparam("p_enhanced_status"),
        reply_text=bindparam("p_reply_text"),
        updated_at=bindparam("p_updated_at"),
    )
)


def record_outcomes(
    sessions: sessionmaker[Session], outcomes: list[Outcome], worker_id: str
) -> None:
    """Write the results of a batch of attempts in one transaction."""
    if not outcomes:
        return
    now = utcnow()
    with transaction(sessions) as session:
        _commit_without_waiting_for_disk(session)
        connection = session.connection()
        connection.execute(
            _UPDATE_MESSAGE,
            [
                {
                    "p_id": outcome.message_pk,
                    "p_status": outcome.status,
                    "p_attempt_count": outcome.attempt_number,
                    "p_next_attempt_at": outcome.next_attempt_at,
                    "p_sent_at": outcome.sent_at,
                    "p_provider_queue_id": outcome.provider_queue_id,
                    "p_last_error": outcome.last_error,
                    "p_held_reason": outcome.held_reason,
                    "p_updated_at": now,
                }
                for outcome in outcomes
            ],
        )
        recipient_rows = [
            {
                "p_id": recipient.id,
                "p_status": recipient.status,
                "p_reply_code": recipient.reply_code,
                "p_enhanced_status": recipient.enhanced_status,
                "p_reply_text": recipient.reply_text,
                "p_updated_at": now,
            }
            for outcome in outcomes
            for recipient in outcome.recipients
        ]
        if recipient_rows:
            connection.execute(_UPDATE_RECIPIENT, recipient_rows)
        connection.execute(
            insert(_ATTEMPTS),
            [
                {
                    "message_pk": outcome.message_pk,
                    "number": outcome.attempt_number,
                    "started_at": outcome.started_at,
                    "duration_ms": outcome.duration_ms,
                    "outcome": outcome.attempt_outcome,
                    "step": outcome.step,
                    "reply_code": outcome.reply_code,
                    "enhanced_status": outcome.enhanced_status,
                    "reply_text": outcome.reply_text,
                    "diagnosis": outcome.diagnosis,
                    "worker": worker_id,
                }
                for outcome in outcomes
            ],
        )


def release(
    sessions: sessionmaker[Session],
    message_pks: list[int],
    not_before: datetime | None = None,
    worker_id: str | None = None,
) -> None:
    """Give claimed messages back to the queue untouched, counting no attempt.

    Used at shutdown and when a profile's limit makes them wait; they are
    due again at ``not_before`` (default now). With ``worker_id``, only
    messages still leased to that worker are released.
    """
    if not message_pks:
        return
    with transaction(sessions) as session:
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id.in_(message_pks),
                OutboxMessage.status == MessageStatus.SENDING,
                *(
                    [OutboxMessage.lease_owner == worker_id]
                    if worker_id is not None
                    else []
                ),
            )
            .values(
                status=MessageStatus.QUEUED,
                lease_owner=None,
                lease_expires_at=None,
                next_attempt_at=not_before or utcnow(),
            )
            .execution_options(synchronize_session=False)
        )


def count_due(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.status.in_(
                        [MessageStatus.QUEUED, MessageStatus.SENDING]
                    ),
                    OutboxMessage.next_attempt_at <= utcnow(),
                )
            )
            or 0
        )
