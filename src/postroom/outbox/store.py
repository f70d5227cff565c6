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

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from postroom.clock import utcnow
from postroom.domain.db import SessionFactory, transaction
from postroom.domain.models import (
    MessageStatus,
    OutboxMessage,
    Profile,
    RecipientStatus,
)
from postroom.domain.profiles import hold_reason
from postroom.outbox.statements import Cursor, OutboxStatements, statements_for

_RETRYABLE_RECIPIENTS = (RecipientStatus.PENDING, RecipientStatus.DEFERRED)


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


class ProfileCache:
    """The profiles a worker's claims need, with the rows they were loaded from.

    Every claim needs the profiles of the messages it claims. Loading one
    through the ORM costs about as much as claiming fifty messages, so a
    claim reads the profiles' rows and loads again only a profile whose
    row has changed. The objects are detached: they are read, never
    changed or saved.
    """

    def __init__(self) -> None:
        self._loaded: dict[str, tuple[Sequence[Any], Profile]] = {}

    def match(
        self, rows: Sequence[Sequence[Any]], names: set[str]
    ) -> tuple[dict[str, Profile], dict[str, Sequence[Any]]]:
        """Return the kept profiles whose rows are unchanged, and the rows of
        the others, by name. ``rows`` come from ``profile_rows``."""
        found: dict[str, Profile] = {}
        stale: dict[str, Sequence[Any]] = {}
        for row in rows:
            loaded = self._loaded.get(row[0])
            if loaded is not None and loaded[0] == row:
                found[row[0]] = loaded[1]
            else:
                stale[row[0]] = row
        for name in names - found.keys() - stale.keys():
            # Deleted: a profile created again under its name is loaded anew.
            self._loaded.pop(name, None)
        return found, stale

    def keep(self, profiles: list[Profile], rows: dict[str, Sequence[Any]]) -> None:
        """Keep profiles loaded for the rows that ``match`` returned."""
        for profile in profiles:
            self._loaded[profile.name] = (rows[profile.name], profile)

    def profiles(
        self,
        session: Session,
        statements: OutboxStatements,
        cursor: Cursor,
        names: set[str],
    ) -> dict[str, Profile]:
        found, stale = self.match(statements.profile_rows(cursor, sorted(names)), names)
        if stale:
            loaded = _load_profiles(session, list(stale))
            self.keep(loaded, stale)
            found.update((profile.name, profile) for profile in loaded)
        return found


def load_profiles(sessions: SessionFactory, names: list[str]) -> list[Profile]:
    """Load the named profiles, detached from their session."""
    with sessions() as session:
        return _load_profiles(session, names)


def _load_profiles(session: Session, names: list[str]) -> list[Profile]:
    profiles = list(session.scalars(select(Profile).where(Profile.name.in_(names))))
    for profile in profiles:
        # Detached now, so that a rollback of a claim cannot expire it
        # while a ProfileCache keeps it.
        session.expunge(profile)
    return profiles


def _cursor(session: Session) -> Cursor:
    """Return a DB-API cursor inside the session's transaction."""
    return cast(Cursor, session.connection().connection.cursor())


def _commit_without_waiting_for_disk(session: Session, cursor: Cursor) -> None:
    """Let PostgreSQL commit this transaction before its WAL reaches the disk.

    For claims and outcomes only, never for queueing. A worker that dies
    after the commit keeps what it wrote, which is what at-least-once
    delivery rests on. Only a crash of the PostgreSQL server itself can lose
    the last fraction of a second of such commits: a lost claim leaves the
    message queued, a lost outcome has it sent again. Neither loses a
    message, and not waiting for the disk on every batch keeps sending fast.
    """
    if session.connection().dialect.name == "postgresql":
        cursor.execute("SET LOCAL synchronous_commit = off")


def claim_due(
    sessions: SessionFactory,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    exclude_profiles: list[str] | None = None,
    profile_cache: ProfileCache | None = None,
) -> tuple[list[ClaimedMessage], dict[str, Profile]]:
    """Claim up to ``limit`` due messages; hold those whose profile cannot send.

    ``exclude_profiles`` names profiles this worker cannot send for now (a
    rate limit reached), whose messages stay for other workers or later.
    ``profile_cache`` keeps the profiles between one worker's claims.

    Returns the claimed messages and the profiles they need, by name.
    """
    with transaction(sessions) as session:
        statements = statements_for(session.get_bind().dialect.name)
        cursor = _cursor(session)
        _commit_without_waiting_for_disk(session, cursor)
        now = utcnow()
        rows = statements.claim(
            cursor,
            worker_id,
            limit,
            now,
            now + timedelta(seconds=lease_seconds),
            exclude_profiles or [],
        )
        if not rows:
            return [], {}

        recipient_rows = statements.recipients(cursor, [row[0] for row in rows])
        messages = claimed_messages(
            rows, recipient_rows, now + timedelta(seconds=lease_seconds / 2)
        )
        profiles = (profile_cache or ProfileCache()).profiles(
            session,
            statements,
            cursor,
            {message.profile_name for message in messages},
        )
        sendable, held_by_profile = sort_out_held(messages, profiles)
        for name, message_pks in held_by_profile.items():
            _hold_claimed(session, message_pks, name, worker_id)
        return sendable, profiles


def claimed_messages(
    rows: list[tuple[Any, ...]],
    recipient_rows: Sequence[Sequence[Any]],
    start_by: datetime,
) -> list[ClaimedMessage]:
    """Build the claimed messages from the claim's rows and their recipients'
    rows (id, message_pk, address, status, in order of id)."""
    rows.sort(key=lambda row: row[0])
    messages = {row[0]: ClaimedMessage(*row) for row in rows}
    for message in messages.values():
        message.start_by = start_by
    for recipient_id, message_pk, address, status in recipient_rows:
        message = messages[message_pk]
        if status in _RETRYABLE_RECIPIENTS:
            message.recipients.append(ClaimedRecipient(recipient_id, address))
        elif status == RecipientStatus.ACCEPTED:
            message.earlier_accepted += 1
        else:
            message.earlier_failed += 1
    return list(messages.values())


def sort_out_held(
    messages: list[ClaimedMessage], profiles: dict[str, Profile]
) -> tuple[list[ClaimedMessage], dict[str, list[int]]]:
    """Return the messages whose profile can send, and the keys of the
    others by profile name."""
    can_send = {
        name: hold_reason(profiles.get(name), name) is None
        for name in {message.profile_name for message in messages}
    }
    sendable: list[ClaimedMessage] = []
    held_by_profile: dict[str, list[int]] = {}
    for message in messages:
        if can_send[message.profile_name]:
            sendable.append(message)
        else:
            held_by_profile.setdefault(message.profile_name, []).append(message.id)
    return sendable, held_by_profile


def hold_claimed(
    sessions: SessionFactory, message_pks: list[int], profile_name: str, worker_id: str
) -> None:
    """Hold claimed messages whose profile could not send when claimed."""
    with transaction(sessions) as session:
        _hold_claimed(session, message_pks, profile_name, worker_id)


def _hold_claimed(
    session: Session, message_pks: list[int], profile_name: str, worker_id: str
) -> None:
    # The profile's row is read again, locked, in the hold's own transaction.
    # An operator who fixed the profile since the claim read it has either
    # committed, and the messages go back to the queue, or waits for this
    # transaction and then releases the held messages.
    profile = session.scalars(
        select(Profile).where(Profile.name == profile_name).with_for_update(read=True)
    ).one_or_none()
    reason = hold_reason(profile, profile_name)
    if reason is None:
        _release(session, message_pks, None, worker_id)
        return
    for message_pk in message_pks:
        _hold(session, message_pk, reason)


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


def record_outcomes(
    sessions: SessionFactory, outcomes: list[Outcome], worker_id: str
) -> None:
    """Write the results of a batch of attempts in one transaction."""
    if not outcomes:
        return
    with transaction(sessions) as session:
        cursor = _cursor(session)
        _commit_without_waiting_for_disk(session, cursor)
        statements_for(session.get_bind().dialect.name).record(
            cursor, outcomes, worker_id, utcnow()
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
        _release(session, message_pks, not_before, worker_id)


def _release(
    session: Session,
    message_pks: list[int],
    not_before: datetime | None,
    worker_id: str | None,
) -> None:
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
