"""Operator actions on one message: retry it now, or cancel it."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from postroom.clock import utcnow
from postroom.domain.models import (
    MessageRecipient,
    MessageStatus,
    OutboxMessage,
    RecipientStatus,
)
from postroom.domain.profiles import find_profile, hold_reason
from postroom.errors import ConflictError, NotFoundError
from postroom.outbox.wakeup import notify_in_transaction

# A retry after the message gave up makes one more attempt: attempt numbers
# keep counting, so a transient failure on it ends the message again.
_RETRYABLE = (
    MessageStatus.QUEUED,
    # Held after the profile failed at login or TLS: retried by hand once
    # the cause is fixed at the provider, where no profile change shows it.
    MessageStatus.HELD,
    MessageStatus.FAILED,
    MessageStatus.PARTIALLY_SENT,
    MessageStatus.CANCELLED,
)
_CANCELLABLE = (MessageStatus.QUEUED, MessageStatus.HELD)


def _load(session: Session, message_pk: int) -> OutboxMessage:
    message = session.get(OutboxMessage, message_pk)
    if message is None:
        raise NotFoundError(f"no message with id {message_pk}", field="id")
    return message


def _refuse(message: OutboxMessage, action: str) -> ConflictError:
    status = message.status
    if status == MessageStatus.SENDING:
        reason = (
            f"a worker is sending it now ({message.lease_owner}); try again once "
            "the attempt is recorded"
        )
    elif status == MessageStatus.SENT:
        reason = "the server accepted it for every recipient"
    elif status == MessageStatus.HELD:
        reason = (
            f"it is held: {message.held_reason}; fix the profile and it is "
            "queued again by itself"
        )
    elif status == MessageStatus.CANCELLED:
        reason = "it is already cancelled; retry it to queue it again"
    else:
        reason = "it is finished; retry it to send it again"
    return ConflictError(
        f"message {message.id} cannot be {action} because its status is "
        f"{status}: {reason}",
        field="status",
    )


def retry_message(session: Session, message_pk: int) -> OutboxMessage:
    """Make a message due now, with its failed or cancelled recipients again."""
    message = _load(session, message_pk)
    if message.status == MessageStatus.HELD:
        reason = hold_reason(
            find_profile(session, message.profile_name), message.profile_name
        )
        if reason is not None:
            # The worker would only hold it again.
            raise ConflictError(
                f"message {message.id} cannot be retried because it is held: "
                f"{reason}; fix the profile and it is queued again by itself",
                field="status",
            )
    now = utcnow()
    # The status condition makes this safe against a worker claiming the
    # message between the load and the update.
    changed = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_pk, OutboxMessage.status.in_(_RETRYABLE))
        .values(
            status=MessageStatus.QUEUED,
            held_reason=None,
            next_attempt_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if not getattr(changed, "rowcount", 0):
        session.refresh(message)
        raise _refuse(message, "retried")
    session.execute(
        update(MessageRecipient)
        .where(
            MessageRecipient.message_pk == message_pk,
            MessageRecipient.status.in_(
                [RecipientStatus.FAILED, RecipientStatus.CANCELLED]
            ),
        )
        .values(status=RecipientStatus.PENDING, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    notify_in_transaction(session)
    session.expire(message)
    session.refresh(message)
    return message


def cancel_message(session: Session, message_pk: int) -> OutboxMessage:
    """Stop a queued or held message from being sent; sent recipients stay."""
    message = _load(session, message_pk)
    now = utcnow()
    changed = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_pk, OutboxMessage.status.in_(_CANCELLABLE))
        .values(
            status=MessageStatus.CANCELLED,
            held_reason=None,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if not getattr(changed, "rowcount", 0):
        session.refresh(message)
        raise _refuse(message, "cancelled")
    session.execute(
        update(MessageRecipient)
        .where(
            MessageRecipient.message_pk == message_pk,
            MessageRecipient.status.in_(
                [RecipientStatus.PENDING, RecipientStatus.DEFERRED]
            ),
        )
        .values(status=RecipientStatus.CANCELLED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.expire(message)
    session.refresh(message)
    return message
