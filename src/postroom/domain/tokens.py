"""API bearer tokens: created once, stored only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from postroom.clock import utcnow
from postroom.domain.models import ApiToken
from postroom.domain.validation import check_length, check_single_line, column_length
from postroom.errors import ConflictError, InvalidInputError, NotFoundError

TOKEN_PREFIX = "pr_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str) -> str:
    """Store a new token's hash and return the token; it cannot be shown again."""
    name = check_single_line(name.strip(), "name")
    if not name:
        raise InvalidInputError("is required", field="name")
    check_length(name, "name", column_length(ApiToken.name))
    if session.scalars(select(ApiToken).where(ApiToken.name == name)).first():
        raise ConflictError(f"a token named {name!r} already exists", field="name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=hash_token(token)))
    return token


def verify_token(session: Session, token: str) -> ApiToken | None:
    digest = hash_token(token)
    stored = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == digest)
    ).first()
    # The lookup is by hash, so timing reveals nothing about the token; the
    # comparison below only guards against a database that matches loosely.
    if stored is None or not hmac.compare_digest(stored.token_hash, digest):
        return None
    now = utcnow()
    # Written at most once a minute, so API calls do not each cost a write.
    if stored.last_used_at is None or (now - stored.last_used_at).total_seconds() > 60:
        stored.last_used_at = now
    return stored


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.name)))


def revoke_token(session: Session, name: str) -> None:
    stored = session.scalars(select(ApiToken).where(ApiToken.name == name)).first()
    if stored is None:
        raise NotFoundError(f"no token named {name!r}", field="name")
    session.delete(stored)
