"""Decide what one delivery attempt means for a message and its recipients.

Pure functions: they take what the SMTP session reported and return the
Outcome to store, so the rules can be read and tested on their own.
Transient or permanent follows the diagnosis, not only the reply code's
first digit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from postroom.diagnosis.engine import Diagnosis
from postroom.domain.models import MessageStatus, RecipientStatus
from postroom.outbox.retry import RetryPolicy
from postroom.outbox.store import (
    ClaimedMessage,
    ClaimedRecipient,
    Outcome,
    RecipientUpdate,
)
from postroom.smtp.errors import SmtpFailure, Step
from postroom.smtp.replies import Reply, parse_enhanced_status, parse_queue_id
from postroom.smtp.session import SendResult

Diagnose = Callable[[SmtpFailure], Diagnosis]

# Steps before any message-specific command. A permanent failure there (a
# rejected login, a certificate the client cannot trust, a TLS setting that
# does not match the port) is the profile's, not the message's: the message
# is held until the profile changes or an operator retries it, instead of
# failing together with every other message queued for that profile.
_SESSION_STEPS = frozenset(
    (Step.CONNECT, Step.GREETING, Step.EHLO, Step.STARTTLS, Step.AUTH)
)


@dataclass
class AttemptPart:
    """One mail transaction of an attempt, for some of the message's recipients.

    A message with more recipients than the profile allows per message is
    sent as several transactions of the same bytes, one part each.
    """

    recipients: list[ClaimedRecipient]
    result: SendResult | None = None
    failure: SmtpFailure | None = None


@dataclass
class AttemptReport:
    """What the SMTP side observed for one message in one attempt."""

    message: ClaimedMessage
    started_at: datetime
    duration_ms: int
    parts: list[AttemptPart]

    @property
    def failure(self) -> SmtpFailure | None:
        return next((part.failure for part in self.parts if part.failure), None)


def _reply_fields(reply: Reply) -> dict[str, Any]:
    return {
        "reply_code": reply.code,
        "enhanced_status": parse_enhanced_status(reply.text),
        "reply_text": reply.text,
    }


def _failure_fields(failure: SmtpFailure) -> dict[str, Any]:
    if failure.reply_code is not None:
        return {
            "reply_code": failure.reply_code,
            "enhanced_status": failure.enhanced_status,
            "reply_text": failure.reply_text,
        }
    return {
        "reply_code": None,
        "enhanced_status": None,
        "reply_text": f"{failure.step}: {failure.error or failure.kind}",
    }


def _final_status(accepted: int, failed: int) -> MessageStatus:
    if failed == 0:
        return MessageStatus.SENT
    if accepted == 0:
        return MessageStatus.FAILED
    return MessageStatus.PARTIALLY_SENT


def decide(
    report: AttemptReport, diagnose: Diagnose, policy: RetryPolicy, now: datetime
) -> Outcome:
    message = report.message
    attempt = message.attempt_count + 1
    updates: list[RecipientUpdate] = []
    diagnosis: Diagnosis | None = None
    step: str | None = None
    attempt_reply: dict[str, Any] = {
        "reply_code": None,
        "enhanced_status": None,
        "reply_text": None,
    }
    queue_id: str | None = None
    hold: Diagnosis | None = None

    data_reply: Reply | None = None
    data_fields: dict[str, Any] = {}
    for part in report.parts:
        if part.failure is not None:
            failure = part.failure
            part_diagnosis = diagnose(failure)
            if step is None:
                # The first failed transaction describes the attempt.
                diagnosis = part_diagnosis
                step = failure.step.value
                attempt_reply = _failure_fields(failure)
            if part_diagnosis.transient:
                status = RecipientStatus.DEFERRED
            elif failure.step in _SESSION_STEPS:
                status = RecipientStatus.PENDING
                hold = hold or part_diagnosis
            else:
                status = RecipientStatus.FAILED
            updates.extend(
                RecipientUpdate(recipient.id, status, **_failure_fields(failure))
                for recipient in part.recipients
            )
            continue
        assert part.result is not None
        result = part.result
        if result.data is not None:
            data_reply = result.data
            data_fields = _reply_fields(data_reply)
        for recipient in part.recipients:
            refusal = result.refused.get(recipient.address)
            if refusal is not None:
                refusal_diagnosis = diagnose(
                    SmtpFailure.from_reply(Step.RCPT_TO, refusal)
                )
                diagnosis = diagnosis or refusal_diagnosis
                status = (
                    RecipientStatus.DEFERRED
                    if refusal_diagnosis.transient
                    else RecipientStatus.FAILED
                )
                updates.append(
                    RecipientUpdate(recipient.id, status, **_reply_fields(refusal))
                )
            elif result.data is not None:
                updates.append(
                    RecipientUpdate(
                        recipient.id, RecipientStatus.ACCEPTED, **data_fields
                    )
                )

    if step is None:
        # No transaction failed: the attempt is described by the last reply
        # to DATA, or by RCPT TO when every recipient was refused.
        if data_reply is not None:
            step = Step.DATA.value
            attempt_reply = data_fields
            queue_id = parse_queue_id(data_reply.text)
        else:
            step = Step.RCPT_TO.value
    elif data_reply is not None:
        queue_id = parse_queue_id(data_reply.text)

    last_error = diagnosis.as_dict() if diagnosis is not None else None
    deferred = [
        update for update in updates if update.status == RecipientStatus.DEFERRED
    ]
    next_attempt_at = now
    if deferred:
        reason = policy.gives_up(attempt, message.created_at, now)
        if reason is None:
            next_attempt_at = now + policy.delay(attempt)
        else:
            for update in deferred:
                update.status = RecipientStatus.FAILED
            if last_error is not None:
                last_error = {**last_error, "gave_up": reason}

    held_reason: str | None = None
    if hold is not None:
        message_status = MessageStatus.HELD
        held_reason = f"the profile cannot send: {hold.cause} {hold.fix}"
    elif any(update.status == RecipientStatus.DEFERRED for update in updates):
        message_status = MessageStatus.QUEUED
    else:
        accepted = message.earlier_accepted + sum(
            update.status == RecipientStatus.ACCEPTED for update in updates
        )
        failed = message.earlier_failed + sum(
            update.status == RecipientStatus.FAILED for update in updates
        )
        message_status = _final_status(accepted, failed)

    any_accepted = any(update.status == RecipientStatus.ACCEPTED for update in updates)
    return Outcome(
        message_pk=message.id,
        status=message_status,
        attempt_number=attempt,
        started_at=report.started_at,
        duration_ms=report.duration_ms,
        step=step,
        diagnosis=diagnosis.as_dict() if diagnosis is not None else None,
        recipients=updates,
        next_attempt_at=next_attempt_at,
        sent_at=now if any_accepted else message.sent_at,
        provider_queue_id=queue_id or message.provider_queue_id,
        last_error=last_error,
        held_reason=held_reason,
        **attempt_reply,
    )
