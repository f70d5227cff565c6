"""Record events: each matching template renders one message into the outbox.

The flow keeps database transactions short. Templates and profiles are read
in one transaction, and rendering happens outside any transaction because
it may take up to the render timeout. One last transaction claims the
idempotency keys, records the events and queues their messages, all or
nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from postroom.clock import utcnow
from postroom.config import Settings
from postroom.domain.db import transaction
from postroom.domain.models import OutboxMessage
from postroom.domain.notifications import Event as EventRow
from postroom.domain.notifications import EventMessage
from postroom.domain.profiles import find_profile, hold_reason
from postroom.errors import ConflictError, InvalidInputError
from postroom.events import idempotency
from postroom.events.fanout import Planned, plan, render_all
from postroom.events.schema import Event
from postroom.outbox.queue import store_message
from postroom.templates.render import RenderLimits

log = logging.getLogger("postroom.events")


@dataclass
class EventResult:
    """The answer for one event, and whether it repeats an earlier one."""

    answer: dict[str, Any]
    replayed: bool = False


def _different_body(event: Event) -> InvalidInputError:
    return InvalidInputError(
        f"{event.idempotency_key!r} was already used for a different event; "
        "use a new key for a new event, or send exactly the same event to get "
        "the first answer again",
        field=f"{event.prefix}idempotency_key",
    )


def _earlier_answer(session: Session, event: Event) -> dict[str, Any] | None:
    """Return the stored answer for the event's key, if it has one."""
    if event.idempotency_key is None:
        return None
    row = idempotency.find(session, event.idempotency_key)
    if row is None or row.answer is None or row.expires_at < utcnow():
        return None
    if row.request_hash != event.request_hash:
        raise _different_body(event)
    return row.answer


def _detail(event: Event, messages: list[dict[str, Any]]) -> str:
    if not messages:
        where = f" for client {event.client!r}" if event.client else ""
        if event.locale:
            where += f" and locale {event.locale!r}"
        return (
            f"no active template matches event type {event.type!r}{where}; "
            "nothing was queued"
        )
    held = [message for message in messages if message["held_reason"]]
    queued = len(messages) - len(held)
    parts = [f"{queued} message{'s' * (queued != 1)} queued"]
    if held:
        reasons = sorted({message["held_reason"] for message in held})
        parts.append(f"{len(held)} held because " + "; ".join(reasons))
    return ", ".join(parts)


def _record(
    session: Session, event: Event, planned: list[Planned], source: str
) -> dict[str, Any]:
    row = EventRow(
        type=event.type,
        client=event.client,
        locale=event.locale,
        data=event.data,
        idempotency_key=event.idempotency_key,
        source=source,
    )
    session.add(row)
    session.flush()

    messages = []
    for item in planned:
        assert item.built is not None
        # The profile is read again here, in the writing transaction, so a
        # profile activated while rendering ran is seen.
        profile = find_profile(session, item.profile_name)
        reason = hold_reason(profile, item.profile_name)
        message: OutboxMessage = store_message(
            session,
            item.built,
            item.profile_name,
            source="event",
            held_reason=reason,
        )
        session.add(
            EventMessage(
                event_pk=row.id,
                message_pk=message.id,
                template_name=item.template.name,
            )
        )
        messages.append(
            {
                "id": message.id,
                "message_id": message.message_id,
                "template": item.template.name,
                "profile": item.profile_name,
                "status": str(message.status),
                "held_reason": message.held_reason,
            }
        )

    return {
        "event_id": row.id,
        "type": event.type,
        "client": event.client,
        "locale": event.locale,
        "idempotency_key": event.idempotency_key,
        "message_ids": [message["id"] for message in messages],
        "messages": messages,
        "detail": _detail(event, messages),
    }


def _write(
    session: Session,
    events: list[Event],
    plans: list[list[Planned] | None],
    settings: Settings,
    source: str,
) -> list[EventResult]:
    now = utcnow()
    expires_at = now + timedelta(hours=settings.idempotency_hours)
    idempotency.set_lock_timeout(session, settings.idempotency_wait_seconds)
    idempotency.purge_expired(session, now)

    results = []
    for event, planned in zip(events, plans, strict=True):
        key = event.idempotency_key
        if key is not None and not idempotency.claim(
            session, key, event.request_hash, now, expires_at
        ):
            row = idempotency.find(session, key)
            if row is not None and row.expires_at < now:
                idempotency.release_expired(session, key, now)
                row = None
            if row is not None:
                if row.request_hash != event.request_hash:
                    raise _different_body(event)
                if row.answer is not None:
                    results.append(EventResult(row.answer, replayed=True))
                    continue
            if not idempotency.claim(session, key, event.request_hash, now, expires_at):
                raise ConflictError(
                    f"a request with idempotency key {key!r} is still being "
                    "processed; retry in a few seconds",
                    field=f"{event.prefix}idempotency_key",
                )
        if planned is None:
            # Rendering was skipped because an earlier answer existed, but
            # that key has expired since: the caller must send it again.
            raise ConflictError(
                f"the idempotency key {key!r} expired while this request ran; "
                "send the event again",
                field=f"{event.prefix}idempotency_key",
            )

        answer = _record(session, event, planned, source)
        if key is not None:
            row = idempotency.find(session, key)
            assert row is not None
            row.answer = answer
            row.event_pk = answer["event_id"]
        results.append(EventResult(answer))
    return results


def _is_lock_timeout(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == "55P03" or "locked" in str(exc)


def record_events(
    sessions: sessionmaker[Session],
    settings: Settings,
    events: list[Event],
    *,
    source: str = "api",
) -> list[EventResult]:
    """Record events and queue their messages; return one answer per event.

    Raises InvalidInputError (nothing stored) for a template that cannot be
    rendered with the event's data, or a key reused with a different body,
    and ConflictError when a request with the same key is still running
    after the wait.
    """
    limits = RenderLimits.from_settings(settings)

    plans: list[list[Planned] | None] = []
    with transaction(sessions) as session:
        for event in events:
            answer = _earlier_answer(session, event)
            plans.append(None if answer is not None else plan(session, event))

    for event, planned in zip(events, plans, strict=True):
        if planned is not None:
            render_all(event, planned, limits)

    try:
        with transaction(sessions) as session:
            results = _write(session, events, plans, settings, source)
    except OperationalError as exc:
        if not _is_lock_timeout(exc):
            raise
        keys = [event.idempotency_key for event in events if event.idempotency_key]
        log.warning(
            "event request waited too long for a racing request",
            extra={"idempotency_keys": keys, "error": str(exc.orig)},
        )
        raise ConflictError(
            "another request with the same idempotency key is still being "
            "processed; retry in a few seconds",
            field=f"{events[0].prefix}idempotency_key"
            if len(events) == 1
            else "events",
        ) from exc

    for result in results:
        answer = result.answer
        log.info(
            "event repeated; returned the first answer"
            if result.replayed
            else "event recorded",
            extra={
                "event_id": answer.get("event_id"),
                "event_type": answer.get("type"),
                "client": answer.get("client"),
                "messages": len(answer.get("message_ids", [])),
                "replayed": result.replayed,
                "source": source,
            },
        )
    return results
