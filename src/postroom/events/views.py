"""Events as the API and CLI show them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from postroom.domain.models import OutboxMessage
from postroom.domain.notifications import Event, EventMessage


def event_view(session: Session, event: Event, *, include_data: bool) -> dict[str, Any]:
    """Render an event with the current status of each message it queued."""
    rows = session.execute(
        select(EventMessage.template_name, OutboxMessage)
        .join(OutboxMessage, OutboxMessage.id == EventMessage.message_pk)
        .where(EventMessage.event_pk == event.id)
        .order_by(EventMessage.id)
    ).all()
    view: dict[str, Any] = {
        "id": event.id,
        "type": event.type,
        "client": event.client,
        "locale": event.locale,
        "idempotency_key": event.idempotency_key,
        "source": event.source,
        "created_at": event.created_at,
        "messages": [
            {
                "id": message.id,
                "message_id": message.message_id,
                "template": template_name,
                "profile": message.profile_name,
                "status": message.status,
                "held_reason": message.held_reason,
                "subject": message.subject,
            }
            for template_name, message in rows
        ],
    }
    if include_data:
        view["data"] = event.data
    return view
