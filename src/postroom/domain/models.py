"""SQLAlchemy models of the core tables: profiles, the outbox, API tokens.

Later features add their models in modules of their own beside this one and
import ``Base`` from here, so Alembic sees one metadata.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from postroom.clock import utcnow
from postroom.domain.types import UTCDateTime


class Base(DeclarativeBase):
    pass


class Security(enum.StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class AuthMechanism(enum.StrEnum):
    """The operator-facing labels; the SMTP layer maps them to SASL names."""

    USER_PASSWORD = "UserPassword"
    CRAM_MD5 = "CRAM-MD5"
    NTLM = "NTLM"
    KERBEROS = "Kerberos"
    XOAUTH2 = "XOAUTH2"


class MessageStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    HELD = "held"
    SENT = "sent"
    # Accepted for some recipients and permanently refused for the others.
    PARTIALLY_SENT = "partially_sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


PENDING_STATUSES = (MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.HELD)


class RecipientStatus(enum.StrEnum):
    PENDING = "pending"
    # Refused with a transient reply; tried again with the next attempt.
    DEFERRED = "deferred"
    ACCEPTED = "accepted"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RecipientKind(enum.StrEnum):
    TO = "to"
    CC = "cc"
    BCC = "bcc"


SYSTEM_PROFILE_NAMES = ("DefaultNotificationProfile", "DefaultDeliveryProfile")


class Profile(Base):
    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    client: Mapped[str | None] = mapped_column(String(200))
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=587)
    security: Mapped[str] = mapped_column(String(16), default=Security.STARTTLS)
    inbound_host: Mapped[str | None] = mapped_column(String(255))
    inbound_port: Mapped[int | None] = mapped_column(Integer)

    login: Mapped[str | None] = mapped_column(String(320))
    password_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    mechanism: Mapped[str] = mapped_column(
        String(32), default=AuthMechanism.USER_PASSWORD
    )
    from_address: Mapped[str | None] = mapped_column(String(500))

    ehlo_name: Mapped[str | None] = mapped_column(String(255))
    ca_bundle: Mapped[str | None] = mapped_column(String(1000))
    connect_timeout: Mapped[float] = mapped_column(Float, default=30.0)
    command_timeout: Mapped[float] = mapped_column(Float, default=60.0)

    # Kerberos (SASL GSSAPI): the server's principal when it is not
    # smtp/<host>, a keytab used instead of the password, and a krb5.conf.
    kerberos_service_principal: Mapped[str | None] = mapped_column(String(500))
    kerberos_keytab: Mapped[str | None] = mapped_column(String(1000))
    kerberos_config: Mapped[str | None] = mapped_column(String(1000))
    # OAuth 2.0 for XOAUTH2. The refresh and access tokens are runtime state
    # and live in oauth_grants, so a token refresh does not touch this row.
    oauth_provider: Mapped[str | None] = mapped_column(String(32))
    oauth_client_id_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    oauth_client_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    oauth_token_endpoint_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    oauth_authorization_endpoint: Mapped[str | None] = mapped_column(String(1000))
    oauth_scope_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    # A TLS client certificate chain and its private key, both PEM, encrypted.
    client_certificate_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    client_key_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Delivery limits, matched to the provider's quotas; None means no limit.
    # They hold across every worker sharing the database.
    max_connections: Mapped[int] = mapped_column(Integer, default=4)
    pool_idle_timeout: Mapped[float] = mapped_column(Float, default=60.0)
    max_messages_per_second: Mapped[int | None] = mapped_column(Integer)
    max_messages_per_minute: Mapped[int | None] = mapped_column(Integer)
    max_messages_per_day: Mapped[int | None] = mapped_column(Integer)
    max_recipients_per_message: Mapped[int | None] = mapped_column(Integer)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )


class OutboxMessage(Base):
    """A message committed for delivery, stored as its final bytes."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Messages refer to their profile by name, not by key, so that a message
    # aimed at a profile that does not exist yet can be held and released
    # when an operator creates it.
    profile_name: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(20), default=MessageStatus.QUEUED)
    held_reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(20), default="api")

    message_id: Mapped[str] = mapped_column(String(998), index=True)
    envelope_sender: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    # True when an address needs the SMTPUTF8 extension (RFC 6531).
    smtputf8: Mapped[bool] = mapped_column(Boolean, default=False)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    provider_queue_id: Mapped[str | None] = mapped_column(String(200))
    # The diagnosis of the latest failed attempt, as stored by the worker.
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The caller's idempotency key and a SHA-256 of the request it came
    # with: a repeat of the same request returns this message.
    idempotency_key: Mapped[str | None] = mapped_column(
        String(200), unique=True, index=True
    )
    request_hash: Mapped[str | None] = mapped_column(String(64))

    recipients: Mapped[list[MessageRecipient]] = relationship(
        back_populates="message",
        cascade="all, delete-orphan",
        order_by="MessageRecipient.id",
    )
    attempts: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="message",
        cascade="all, delete-orphan",
        order_by="DeliveryAttempt.number",
    )

    __table_args__ = (Index("ix_messages_status_due", "status", "next_attempt_at"),)


class MessageRecipient(Base):
    """One envelope recipient with the provider's last reply for it."""

    __tablename__ = "message_recipients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_pk: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(3), default=RecipientKind.TO)
    status: Mapped[str] = mapped_column(String(20), default=RecipientStatus.PENDING)
    reply_code: Mapped[int | None] = mapped_column(Integer)
    enhanced_status: Mapped[str | None] = mapped_column(String(16))
    reply_text: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )

    message: Mapped[OutboxMessage] = relationship(back_populates="recipients")


class DeliveryAttempt(Base):
    """One try at handing a message to the provider, with what happened."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_pk: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
    # sent, partially_sent, deferred or failed.
    outcome: Mapped[str] = mapped_column(String(20))
    step: Mapped[str | None] = mapped_column(String(16))
    reply_code: Mapped[int | None] = mapped_column(Integer)
    enhanced_status: Mapped[str | None] = mapped_column(String(16))
    reply_text: Mapped[str | None] = mapped_column(Text)
    diagnosis: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    worker: Mapped[str | None] = mapped_column(String(200))

    message: Mapped[OutboxMessage] = relationship(back_populates="attempts")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # SHA-256 of the token: tokens are 256 random bits, so a fast hash is
    # enough to make a stolen database useless for calling the API.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
