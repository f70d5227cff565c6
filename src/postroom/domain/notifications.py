"""Tables for notifications: templates, events and idempotency keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from postroom.clock import utcnow
from postroom.domain.models import Base
from postroom.domain.types import UTCDateTime


class Template(Base):
    """An operator-written email bound to a business event type."""

    __tablename__ = "templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    event_type: Mapped[str] = mapped_column(String(200), index=True)
    # None: the template applies to every client.
    client: Mapped[str | None] = mapped_column(String(200))
    # None: the template applies to every locale.
    locale: Mapped[str | None] = mapped_column(String(35))

    subject: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    text_body: Mapped[str | None] = mapped_column(Text)
    # Overrides the profile's From address when set.
    from_address: Mapped[str | None] = mapped_column(String(500))
    # Lists of recipient entries: a template string, or
    # {"address": template, "name": template}.
    to: Mapped[list[Any]] = mapped_column(JSON, default=list)
    cc: Mapped[list[Any]] = mapped_column(JSON, default=list)
    bcc: Mapped[list[Any]] = mapped_column(JSON, default=list)
    reply_to: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Header name to template string.
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Attachment specifications, see postroom.templates.spec.AttachmentSpec.
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    list_unsubscribe: Mapped[list[str]] = mapped_column(JSON, default=list)
    list_unsubscribe_post: Mapped[bool] = mapped_column(Boolean, default=False)

    # None: DefaultNotificationProfile. Kept by name, like messages, so a
    # template may name a profile that does not exist yet.
    profile_name: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Event data for previews.
    sample_data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The event data paths the template reads, found when it was saved.
    variables: Mapped[list[str]] = mapped_column(JSON, default=list)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )


class Event(Base):
    """A business event as received, with the messages it produced."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(200), index=True)
    client: Mapped[str | None] = mapped_column(String(200))
    locale: Mapped[str | None] = mapped_column(String(35))
    # NOTE: kept as long as the event row; nothing removes old events yet.
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), index=True)
    # api or cli.
    source: Mapped[str] = mapped_column(String(20), default="api")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    messages: Mapped[list[EventMessage]] = relationship(
        back_populates="event",
        cascade="all, delete-orphan",
        order_by="EventMessage.id",
    )


class EventMessage(Base):
    """One outbox message an event produced, and the template that made it."""

    __tablename__ = "event_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_pk: Mapped[int] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), index=True
    )
    message_pk: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    template_name: Mapped[str] = mapped_column(String(200))

    event: Mapped[Event] = relationship(back_populates="messages")


class IdempotencyKey(Base):
    """A key a caller sent with an event, and the answer it received.

    The primary key makes a second insert of the same key wait on
    PostgreSQL until the first transaction ends, which is what serializes
    two racing requests.
    """

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 of the canonical JSON of the event, to recognize a repeat
    # with a different body.
    request_hash: Mapped[str] = mapped_column(String(64))
    event_pk: Mapped[int | None] = mapped_column(
        ForeignKey("events.id", ondelete="SET NULL")
    )
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
