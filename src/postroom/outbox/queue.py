"""Accepting work: commit a built message to the outbox."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from postroom.domain.models import (
    MessageRecipient,
    MessageStatus,
    OutboxMessage,
    RecipientStatus,
)
from postroom.domain.profiles import find_profile, hold_reason
from postroom.domain.validation import check_single_line
from postroom.errors import InvalidInputError
from postroom.mime.build import BuiltMessage, MessageDraft, build_message
from postroom.mime.parts import Attachment
from postroom.outbox.wakeup import notify_in_transaction
from postroom.templates.attachments import check_total_size


class AttachmentInput(BaseModel):
    """A file to attach, with its content in base64 (RFC 4648)."""

    model_config = ConfigDict(extra="forbid")

    filename: str
    content_type: str = "application/octet-stream"
    content_base64: str
    # Set it to show the file inline: the HTML body refers to it as
    # <img src="cid:CONTENT_ID">.
    content_id: str | None = None


class MessageRequest(BaseModel):
    """A message to send, as the API and CLI accept it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    profile: str
    from_address: str | None = Field(default=None, alias="from")
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    reply_to: list[str] = Field(default_factory=list)
    subject: str = ""
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    attachments: list[AttachmentInput] = Field(default_factory=list)
    # A client that retries after a timeout sends the same key again and
    # gets the first message back instead of queueing a second one.
    idempotency_key: str | None = Field(default=None, max_length=200)

    def digest(self) -> str:
        """Return a SHA-256 of the request, the idempotency key left out."""
        body = self.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"})
        encoded = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(encoded.encode()).hexdigest()


def _attachments(request: MessageRequest) -> list[Attachment]:
    files = []
    for index, item in enumerate(request.attachments):
        field = f"attachments[{index}].content_base64"
        try:
            content = base64.b64decode(
                "".join(item.content_base64.split()), validate=True
            )
        except (binascii.Error, ValueError) as exc:
            raise InvalidInputError(f"is not valid base64: {exc}", field=field) from exc
        files.append(
            Attachment(
                filename=item.filename,
                content=content,
                content_type=item.content_type,
                content_id=item.content_id,
            )
        )
    check_total_size(files)
    return files


def store_message(
    session: Session,
    built: BuiltMessage,
    profile_name: str,
    *,
    source: str,
    held_reason: str | None = None,
    not_before: datetime | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> OutboxMessage:
    """Add a built message to the outbox in the caller's transaction.

    With ``held_reason`` the message is kept as held; it is queued when its
    profile becomes able to send.
    """
    message = OutboxMessage(
        profile_name=profile_name,
        status=MessageStatus.HELD if held_reason else MessageStatus.QUEUED,
        held_reason=held_reason,
        source=source,
        message_id=built.message_id,
        envelope_sender=built.envelope_sender,
        subject=built.subject,
        raw=built.raw,
        size=len(built.raw),
        smtputf8=built.smtputf8,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        recipients=[
            MessageRecipient(address=address, kind=kind, status=RecipientStatus.PENDING)
            for address, kind in built.recipients
        ],
    )
    if not_before is not None:
        message.next_attempt_at = not_before
    session.add(message)
    session.flush()
    if not held_reason:
        notify_in_transaction(session)
    return message


def find_by_idempotency_key(
    session: Session, request: MessageRequest
) -> OutboxMessage | None:
    """Return the message queued earlier with the request's key, if any.

    Raises InvalidInputError when the key came with a different request.
    """
    if request.idempotency_key is None:
        return None
    earlier = session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.idempotency_key == request.idempotency_key
        )
    ).one_or_none()
    if earlier is not None and earlier.request_hash != request.digest():
        raise InvalidInputError(
            f"was already used for message {earlier.id} with a different request; "
            "use a new key for a new message",
            field="idempotency_key",
        )
    return earlier


def _largest_part(request: MessageRequest) -> tuple[str, int]:
    """Return the request field that makes a message largest, with its size."""
    sizes = {
        "text": len((request.text or "").encode()),
        "html": len((request.html or "").encode()),
        "headers": sum(
            len(name.encode()) + len(value.encode())
            for name, value in request.headers.items()
        ),
        "subject": len(request.subject.encode()),
        # Base64 is what the attachments take in the built message too.
        "attachments": sum(len(item.content_base64) for item in request.attachments),
    }
    field = max(sizes, key=lambda name: sizes[name])
    return field, sizes[field]


def _too_large(field: str, size: int, limit: int, what: str) -> InvalidInputError:
    return InvalidInputError(
        f"the message is too large: {what} {size:,} bytes, over the limit of "
        f"{limit:,} bytes for a message (POSTROOM_MAX_MESSAGE_BYTES); shorten "
        f"{field} or send the content as a link",
        field=field,
    )


def enqueue(
    session: Session,
    request: MessageRequest,
    *,
    source: str = "api",
    max_bytes: int | None = None,
) -> OutboxMessage:
    """Validate, build and store a message; unknown profiles are an input error.

    With ``max_bytes``, a message larger than that once built is an input
    error naming the field that makes it large.
    """
    if max_bytes is not None:
        # A field alone over the limit fails before building the message.
        field, size = _largest_part(request)
        if size > max_bytes:
            raise _too_large(field, size, max_bytes, f"{field} alone is")
    if request.idempotency_key is not None:
        check_single_line(request.idempotency_key, "idempotency_key")
    profile = find_profile(session, request.profile)
    if profile is None:
        raise InvalidInputError(
            f"no email profile named {request.profile!r}; create it first or use "
            "an existing one",
            field="profile",
        )
    sender = request.from_address or profile.from_address
    if not sender:
        raise InvalidInputError(
            f"is required because profile {profile.name!r} has no From address",
            field="from",
        )
    built = build_message(
        MessageDraft(
            sender=sender,
            to=request.to,
            cc=request.cc,
            bcc=request.bcc,
            reply_to=request.reply_to,
            subject=request.subject,
            text=request.text,
            html=request.html,
            headers=request.headers,
            attachments=_attachments(request),
        )
    )
    if max_bytes is not None and len(built.raw) > max_bytes:
        field, _size = _largest_part(request)
        raise _too_large(field, len(built.raw), max_bytes, "once built it is")
    message = store_message(
        session,
        built,
        profile.name,
        source=source,
        held_reason=hold_reason(profile, profile.name),
        idempotency_key=request.idempotency_key,
        request_hash=request.digest() if request.idempotency_key else None,
    )
    return message


def message_view(message: OutboxMessage) -> dict[str, Any]:
    """Render a message with its recipients and attempts for API and CLI."""
    return {
        "id": message.id,
        "message_id": message.message_id,
        "profile": message.profile_name,
        "status": message.status,
        "held_reason": message.held_reason,
        "source": message.source,
        "envelope_sender": message.envelope_sender,
        "subject": message.subject,
        "size": message.size,
        "created_at": message.created_at,
        "updated_at": message.updated_at,
        "next_attempt_at": message.next_attempt_at
        if message.status in (MessageStatus.QUEUED, MessageStatus.HELD)
        else None,
        "attempt_count": message.attempt_count,
        "sent_at": message.sent_at,
        "provider_queue_id": message.provider_queue_id,
        "last_error": message.last_error,
        "recipients": [
            {
                "address": recipient.address,
                "kind": recipient.kind,
                "status": recipient.status,
                "reply_code": recipient.reply_code,
                "enhanced_status": recipient.enhanced_status,
                "reply_text": recipient.reply_text,
                "updated_at": recipient.updated_at,
            }
            for recipient in message.recipients
        ],
        "attempts": [
            {
                "number": attempt.number,
                "started_at": attempt.started_at,
                "duration_ms": attempt.duration_ms,
                "outcome": attempt.outcome,
                "step": attempt.step,
                "reply_code": attempt.reply_code,
                "enhanced_status": attempt.enhanced_status,
                "reply_text": attempt.reply_text,
                "diagnosis": attempt.diagnosis,
                "worker": attempt.worker,
            }
            for attempt in message.attempts
        ],
    }
