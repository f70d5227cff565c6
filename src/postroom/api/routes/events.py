"""Events: record one or a batch, and look them up."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from postroom.api.deps import RuntimeDep, TokenDep
from postroom.api.params import BeforeIdQuery, IdPath, LimitQuery
from postroom.domain.db import transaction
from postroom.domain.notifications import Event
from postroom.errors import InvalidInputError, NotFoundError
from postroom.events.schema import MAX_BATCH_EVENTS, EventInput, check_event
from postroom.events.service import record_events
from postroom.events.views import event_view

router = APIRouter(prefix="/api/events", tags=["events"])


class EventsBody(BaseModel):
    """One event (type, client, locale, data, idempotency_key) or ``events``."""

    model_config = ConfigDict(extra="forbid")

    type: str | None = Field(
        default=None, description="Event type, for example order.shipped"
    )
    client: str | None = None
    locale: str | None = None
    data: dict[str, Any] | None = None
    idempotency_key: str | None = None
    events: list[EventInput] | None = Field(
        default=None,
        max_length=MAX_BATCH_EVENTS,
        description="The batch form: several events, recorded all or none",
    )


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def post_events(
    body: EventsBody, runtime: RuntimeDep, _token: TokenDep, response: Response
) -> dict[str, Any]:
    """Record events; each matching template queues one message.

    A repeat with the same idempotency key and body returns the first
    answer (header ``Idempotent-Replayed: true``) and queues nothing.
    """
    single = body.model_dump(exclude={"events"}, exclude_none=True)
    if body.events is not None:
        if single:
            raise InvalidInputError(
                "send either one event or a list in events, not both",
                field="events",
            )
        if not body.events:
            raise InvalidInputError("must contain at least one event", field="events")
        events = [
            check_event(item, prefix=f"events[{index}].")
            for index, item in enumerate(body.events)
        ]
        results = record_events(runtime.sessions, runtime.settings, events)
        return {"results": [result.answer for result in results]}

    if body.type is None:
        raise InvalidInputError(
            "is required, for example order.shipped (or send a batch in events)",
            field="type",
        )
    event = check_event(EventInput.model_validate(single))
    (result,) = record_events(runtime.sessions, runtime.settings, [event])
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return result.answer


@router.get("/{id}")
def get_event(
    event_pk: IdPath, runtime: RuntimeDep, _token: TokenDep
) -> dict[str, Any]:
    """Show an event with its data and the current status of each message."""
    with transaction(runtime.sessions) as session:
        event = session.get(Event, event_pk)
        if event is None:
            raise NotFoundError(f"no event with id {event_pk}", field="id")
        return event_view(session, event, include_data=True)


@router.get("")
def list_events(
    runtime: RuntimeDep,
    _token: TokenDep,
    event_type: Annotated[str | None, Query(alias="type")] = None,
    client: str | None = None,
    limit: LimitQuery = 50,
    before_id: BeforeIdQuery = None,
) -> list[dict[str, Any]]:
    """List events, newest first, without their data."""
    query = select(Event).order_by(Event.id.desc()).limit(limit)
    if event_type is not None:
        query = query.where(Event.type == event_type)
    if client is not None:
        query = query.where(Event.client == client)
    if before_id is not None:
        query = query.where(Event.id < before_id)
    with transaction(runtime.sessions) as session:
        return [
            event_view(session, event, include_data=False)
            for event in session.scalars(query)
        ]
