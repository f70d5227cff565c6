"""Shared steps of the auth tests: profiles, test emails, queue and worker."""

from __future__ import annotations

import asyncio
from typing import Any

from postroom.diagnosis.testmail import TestEmailResult, send_test_email
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.models import OutboxMessage
from postroom.oauth.tokens import profile_connection_settings
from postroom.outbox.queue import MessageRequest, enqueue, message_view
from postroom.outbox.worker import Worker
from postroom.runtime import Runtime
from postroom.smtp.settings import ConnectionSettings


def add_profile(runtime: Runtime, port: int, **changes: Any) -> None:
    values: dict[str, Any] = {
        "name": "Orders",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "Orders <orders@example.com>",
        "connect_timeout": 5.0,
        "command_timeout": 5.0,
    }
    values.update(changes)
    with transaction(runtime.sessions) as session:
        profiles.create_profile(
            session, runtime.secrets, profiles.ProfileInput(**values)
        )


def update_profile(runtime: Runtime, name: str = "Orders", **changes: Any) -> None:
    with transaction(runtime.sessions) as session:
        profiles.update_profile(
            session, runtime.secrets, name, profiles.ProfileInput(**changes)
        )


def settings_of(runtime: Runtime, name: str = "Orders") -> ConnectionSettings:
    with transaction(runtime.sessions) as session:
        profile = profiles.get_profile(session, name)
        return profile_connection_settings(profile, runtime.sessions, runtime.secrets)


def test_email(runtime: Runtime, name: str = "Orders") -> TestEmailResult:
    settings = settings_of(runtime, name)
    return asyncio.run(
        send_test_email(name, settings, "orders@example.com", "bob@example.com")
    )


test_email.__test__ = False  # type: ignore[attr-defined]


def send_through(settings: ConnectionSettings) -> TestEmailResult:
    return asyncio.run(
        send_test_email("Test", settings, "orders@example.com", "bob@example.com")
    )


def queue(runtime: Runtime, name: str = "Orders") -> int:
    request = MessageRequest.model_validate(
        {
            "profile": name,
            "to": ["bob@example.com"],
            "subject": "Your order shipped",
            "text": "Parcel 42 is on its way.",
        }
    )
    with transaction(runtime.sessions) as session:
        return enqueue(session, request).id


def drain(runtime: Runtime) -> int:
    return asyncio.run(Worker(runtime).drain())


def view(runtime: Runtime, message_pk: int) -> dict[str, Any]:
    with transaction(runtime.sessions) as session:
        message = session.get(OutboxMessage, message_pk)
        assert message is not None
        return message_view(message)
