"""Messages: queue one, look one up, list them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from postroom.api.deps import RuntimeDep, TokenDep
from postroom.api.params import BeforeIdQuery, IdPath, LimitQuery
from postroom.domain.db import transaction
from postroom.domain.models import MessageStatus, OutboxMessage
from postroom.errors import InvalidInputError, NotFoundError
from postroom.outbox.actions import cancel_message, retry_message
from postroom.outbox.queue import (
    MessageRequest,
    enqueue,
    find_by_idempotency_key,
    message_view,
)

router = APIRouter(prefix="/api/messages", tags=["messages"])


def _answer(message: OutboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "message_id": message.message_id,
        "status": message.status,
        "held_reason": message.held_reason,
    }


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def queue_message(
    request: MessageRequest,
    runtime: RuntimeDep,
    _token: TokenDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="Same as the idempotency_key field; a repeat with the same "
            "key and body returns the first message (200) instead of a new one"
        ),
    ] = None,
) -> dict[str, Any]:
    """Commit a message to the outbox; the answer comes after the commit."""
    if idempotency_key is not None:
        if request.idempotency_key not in (None, idempotency_key):
            raise InvalidInputError(
                "differs from the Idempotency-Key header; send one of them",
                field="idempotency_key",
            )
        request = request.model_copy(update={"idempotency_key": idempotency_key})
    try:
        with transaction(runtime.sessions) as session:
            earlier = find_by_idempotency_key(session, request)
            if earlier is None:
                answer = _answer(
                    enqueue(
                        session,
                        request,
                        source="api",
                        max_bytes=runtime.settings.max_message_bytes,
                    )
                )
            else:
                answer = _answer(earlier)
    except IntegrityError:
        # Another request with the same key committed first.
        with transaction(runtime.sessions) as session:
            earlier = find_by_idempotency_key(session, request)
            if earlier is None:
                raise
            answer = _answer(earlier)
    if earlier is not None:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/api/messages/{answer['id']}"
    return answer


@router.get("/{id}")
def get_message(
    message_pk: IdPath, runtime: RuntimeDep, _token: TokenDep
) -> dict[str, Any]:
    with transaction(runtime.sessions) as session:
        message = session.get(OutboxMessage, message_pk)
        if message is None:
            raise NotFoundError(f"no message with id {message_pk}", field="id")
        return message_view(message)


@router.post("/{message_pk}/retry")
def retry(message_pk: int, runtime: RuntimeDep, _token: TokenDep) -> dict[str, Any]:
    """Queue a message again now: one still waiting, failed, partly sent or
    cancelled. Its failed and cancelled recipients are tried again; 409 when
    it is being sent, held or already sent."""
    with transaction(runtime.sessions) as session:
        return message_view(retry_message(session, message_pk))


@router.post("/{message_pk}/cancel")
def cancel(message_pk: int, runtime: RuntimeDep, _token: TokenDep) -> dict[str, Any]:
    """Cancel a queued or held message; 409 when it is being sent or finished."""
    with transaction(runtime.sessions) as session:
        return message_view(cancel_message(session, message_pk))


@router.get("")
def list_messages(
    runtime: RuntimeDep,
    _token: TokenDep,
    status_filter: Annotated[MessageStatus | None, Query(alias="status")] = None,
    profile: str | None = None,
    limit: LimitQuery = 50,
    before_id: BeforeIdQuery = None,
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
