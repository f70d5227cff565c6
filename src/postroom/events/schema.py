"""Events as callers send them, checked and normalized."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from postroom.domain.validation import check_single_line
from postroom.errors import InvalidInputError
from postroom.templates.validation import check_event_type, normalize_locale

MAX_BATCH_EVENTS = 500
# Event data carries attachments as base64: 25 MiB of files (the attachment
# limit) need about 34 MB, and the rest of the data much less.
MAX_EVENT_DATA_BYTES = 40 * 1024 * 1024
MAX_KEY_LENGTH = 255


class EventInput(BaseModel):
    """One business event."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="Event type, for example order.shipped")
    client: str | None = Field(
        default=None,
        description="Client (tenant, brand); templates for all clients match too",
    )
    locale: str | None = Field(default=None, description="Language tag, such as de-CH")
    data: dict[str, Any] = Field(
        default_factory=dict, description="Variables for the templates"
    )
    idempotency_key: str | None = Field(
        default=None,
        description="Any unique string, such as a UUID; a repeat with the same "
        "key returns the first answer and queues nothing",
    )


class EventBatchInput(BaseModel):
    """Several events, recorded together: all of them or none."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventInput] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


@dataclass(frozen=True)
class Event:
    """A checked event, with ``prefix`` naming it in errors (``events[2].``)."""

    type: str
    client: str | None
    locale: str | None
    data: dict[str, Any]
    idempotency_key: str | None
    request_hash: str
    prefix: str


def check_event(event: EventInput, prefix: str = "") -> Event:
    """Validate an event; raise InvalidInputError naming the field."""
    event_type = check_event_type(event.type, f"{prefix}type")
    client = (event.client or "").strip() or None
    if client is not None:
        check_single_line(client, f"{prefix}client")
        if len(client) > 200:
            raise InvalidInputError(
                "must be at most 200 characters", field=f"{prefix}client"
            )
    locale = normalize_locale(event.locale, f"{prefix}locale")

    key = event.idempotency_key
    if key is not None:
        check_single_line(key, f"{prefix}idempotency_key")
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            raise InvalidInputError(
                f"must be 1 to {MAX_KEY_LENGTH} characters, for example a UUID",
                field=f"{prefix}idempotency_key",
            )

    canonical = json.dumps(
        {"type": event_type, "client": client, "locale": locale, "data": event.data},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    if len(canonical) > MAX_EVENT_DATA_BYTES:
        raise InvalidInputError(
            f"must be at most {MAX_EVENT_DATA_BYTES} bytes of JSON",
            field=f"{prefix}data",
        )
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    return Event(
        type=event_type,
        client=client,
        locale=locale,
        data=event.data,
        idempotency_key=key,
        request_hash=digest,
        prefix=prefix,
    )
