"""Tables of the OAuth 2.0 state behind XOAUTH2 profiles.

``oauth_grants`` holds what the provider issued for a profile (the refresh
token, the cached access token and their expiry) and the last refresh
failure. ``oauth_flows`` holds the authorization requests of the interactive
connect flow until the provider redirects back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from postroom.clock import utcnow
from postroom.domain.models import Base
from postroom.domain.types import UTCDateTime


class OAuthGrant(Base):
    """The tokens a provider issued for one profile; one row per profile."""

    __tablename__ = "oauth_grants"

    profile_id: Mapped[int] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    )
    refresh_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Known only when the provider says (refresh_token_expires_in).
    refresh_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    access_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The provider's answer to the last failed refresh, cleared by a success.
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure_error: Mapped[str | None] = mapped_column(String(200))
    failure_description: Mapped[str | None] = mapped_column(Text)
    failure_status: Mapped[int | None] = mapped_column(Integer)
    # True once the failure was alerted, so an outage alerts once, not on
    # every delivery attempt.
    alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )


class OAuthFlow(Base):
    """An authorization request waiting for the provider's redirect."""

    __tablename__ = "oauth_flows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # SHA-256 of the state parameter; the state itself is the capability
    # that lets the redirect complete the flow, so only its hash is stored.
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    profile_id: Mapped[int] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), index=True
    )
    code_verifier_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    authorization_url: Mapped[str] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
