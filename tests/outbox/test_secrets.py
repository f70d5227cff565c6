"""No password, nor its base64 form, reaches logs or stored records."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable

import pytest
from sqlalchemy import text

from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.logs import JsonFormatter
from postroom.outbox.queue import MessageRequest, enqueue
from postroom.outbox.worker import Worker
from postroom.runtime import Runtime
from tests.peers.scripted import ScriptedServer

PASSWORD = "Leak-Canary-9f3e"


def forms(secret: str) -> list[str]:
    plain_blob = base64.b64encode(f"\0alice\0{secret}".encode()).decode()
    return [secret, base64.b64encode(secret.encode()).decode(), plain_blob]


@pytest.mark.parametrize(
    "auth_reply",
    ["535 5.7.8 Authentication failed", f"535 5.7.8 bad credentials {PASSWORD}", None],
)
def test_worker_logs_and_records_hold_no_password(
    runtime: Runtime,
    start_scripted: Callable[..., ScriptedServer],
    caplog: pytest.LogCaptureFixture,
    auth_reply: str | None,
) -> None:
    replies = {"AUTH": auth_reply} if auth_reply else {}
    server = start_scripted(
        extensions=["AUTH PLAIN LOGIN"], users={"alice": PASSWORD}, replies=replies
    )
    with transaction(runtime.sessions) as session:
        profiles.create_profile(
            session,
            runtime.secrets,
            profiles.ProfileInput(
                name="Orders",
                host="127.0.0.1",
                port=server.port,
                security="none",
                login="alice",
                password=PASSWORD,
                confirm_password=PASSWORD,
                from_address="orders@example.com",
            ),
        )
        enqueue(
            session,
            MessageRequest.model_validate(
                {"profile": "Orders", "to": ["bob@example.com"], "text": "x"}
            ),
        )
    caplog.set_level(logging.DEBUG)

    asyncio.run(Worker(runtime).drain())

    logged = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    with runtime.engine.connect() as connection:
        stored = repr(
            [
                list(connection.execute(text(f"SELECT * FROM {table}")))
                for table in ("messages", "message_recipients", "delivery_attempts")
            ]
        )
    assert any(command.startswith("AUTH PLAIN") for command in server.commands)
    assert "delivery attempt" in logged
    for form in forms(PASSWORD):
        assert form not in logged
        assert form not in stored
