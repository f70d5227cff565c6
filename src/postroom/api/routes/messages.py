"""Messages: queue one, look one up, list them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import select

from postroom.api.deps import RuntimeDep, TokenDep
from postroom.domain.db import transaction
from postroom.domain.models import MessageStatus, OutboxMessage
from postroom.errors import NotFoundError
from postroom.outbox.queue import MessageRequest, enqueue, message_view

router = APIRouter(prefix="/api/messages", tags=["messages"])


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def queue_message(
    request: MessageRequest, runtime: RuntimeDep, _token: TokenDep, response: Response
) -> dict[str, Any]:
    """Commit a message to the outbox; the answer comes after the commit."""
    with transaction(runtime.sessions) as session:
        message = enqueue(
            session,
            request,
            source="api",
            max_bytes=runtime.settings.max_message_bytes,
        )
        answer = {
            "id": message.id,
            "message_id": message.message_id,
            "status": message.status,
            "held_reason": message.held_reason,
        }
    response.headers["Location"] = f"/api/messages/{answer['id']}"
    return answer


@router.get("/{message_pk}")
def get_message(
    message_pk: int, runtime: RuntimeDep, _token: TokenDep
) -> dict[str, Any]:
    with transaction(runtime.sessions) as session:
        message = session.get(OutboxMessage, message_pk)
        if message is None:
            raise NotFoundError(f"no message with id {message_pk}", field="id")
        return message_view(message)


@router.get("")
def list_messages(
    runtime: RuntimeDep,
    _token: TokenDep,
    status_filter: Annotated[MessageStatus | None, Query(alias="status")] = None,
    profile: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before_id: Annotated[
        int | None, Query(description="Page: ids below this one")
    ] = None,
) -> list[dict[str, Any]]:
    """List messages, newest first, without their bodies."""
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if status_filter is not None:
        query = query.where(OutboxMessage.status == status_filter)
    if profile is not None:
        query = query.where(OutboxMessage.profile_name == profile)
    if before_id is not None:
        query = query.where(OutboxMessage.id < before_id)
    with transaction(runtime.sessions) as session:
        return [message_view(message) for message in session.scalars(query)]
