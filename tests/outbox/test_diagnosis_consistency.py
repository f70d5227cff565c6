"""A failed delivery and a failed test email explain a server the same way.

Each scenario runs a real server that fails one way. The test email's
diagnosis and the diagnosis the worker stores for a queued message must be
the same entry, and the worker must retry or fail the message as that entry's
``transient`` flag requires, whatever the reply code's first digit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from postroom.devserver.sink import SinkServer
from postroom.diagnosis.testmail import send_test_email
from postroom.domain import profiles
from postroom.domain.connection import connection_settings
from postroom.domain.db import transaction
from postroom.domain.models import OutboxMessage
from postroom.outbox.queue import MessageRequest, enqueue, message_view
from postroom.outbox.worker import Worker
from postroom.runtime import Runtime
from tests.peers.blackhole import closed_port
from tests.peers.certs import Certificates
from tests.peers.scripted import ScriptedServer


@dataclass(frozen=True)
class Scenario:
    name: str
    expected_id: str
    transient: bool
    security: str = "none"
    scripted: dict[str, Any] = field(default_factory=dict)
    # "scripted", "sink-tls" (implicit TLS sink) or "closed".
    kind: str = "scripted"


SCENARIOS = [
    Scenario(
        "STARTTLS required",
        "starttls-required",
        transient=False,
        scripted={"replies": {"MAIL": "530 5.7.0 Must issue a STARTTLS command first"}},
    ),
    Scenario(
        "Microsoft 365 451 STARTTLS required",
        "starttls-required",
        transient=False,
        scripted={"replies": {"MAIL": "451 5.7.3 STARTTLS is required to send mail"}},
    ),
    Scenario(
        "Microsoft 365 Send As",
        "m365-send-as-denied",
        transient=False,
        scripted={
            "replies": {
                "DATA": "550 5.7.60 SMTP; Client does not have permissions to send "
                "as this sender"
            }
        },
    ),
    Scenario(
        "Gmail daily limit",
        "quota-exceeded",
        transient=True,
        scripted={
            "replies": {"DATA": "550 5.4.5 Daily user sending quota exceeded. - gsmtp"}
        },
    ),
    Scenario(
        "Mailgun account not activated",
        "mailgun-domain-not-allowed",
        transient=False,
        scripted={
            "replies": {
                "MAIL": "421 Domain sandbox123.mailgun.org is not allowed to send: "
                "Please activate your Mailgun account."
            }
        },
    ),
    Scenario(
        "relay denied with 454",
        "relay-access-denied",
        transient=False,
        scripted={
            "replies": {"RCPT": "454 4.7.1 <bob@example.com>: Relay access denied"}
        },
    ),
    Scenario(
        "too many recipients",
        "too-many-recipients",
        transient=True,
        scripted={"replies": {"RCPT": "452 4.5.3 Error: too many recipients"}},
    ),
    Scenario(
        "greeting refused",
        "greeting-refused",
        transient=False,
        scripted={"greeting": "554 5.7.1 smtp.example.com Access denied"},
    ),
    Scenario(
        "STARTTLS client on an implicit-TLS port",
        "plain-on-tls-port",
        transient=False,
        security="starttls",
        kind="sink-tls",
    ),
    Scenario(
        "self-signed certificate",
        "certificate-self-signed",
        transient=False,
        security="starttls",
        kind="self-signed",
    ),
    Scenario("closed port", "connection-refused", transient=True, kind="closed"),
]


def start_server(
    scenario: Scenario,
    start_scripted: Callable[..., ScriptedServer],
    start_sink: Callable[..., SinkServer],
    certificates: Certificates,
) -> int:
    if scenario.kind == "closed":
        return closed_port()
    if scenario.kind == "sink-tls":
        return start_sink("tls").port
    if scenario.kind == "self-signed":
        context = certificates.self_signed.server_context()
        return start_scripted(tls_context=context).port
    return start_scripted(**scenario.scripted).port


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_delivery_and_test_email_agree(
    scenario: Scenario,
    runtime: Runtime,
    start_scripted: Callable[..., ScriptedServer],
    start_sink: Callable[..., SinkServer],
    certificates: Certificates,
) -> None:
    port = start_server(scenario, start_scripted, start_sink, certificates)
    with transaction(runtime.sessions) as session:
        profile = profiles.create_profile(
            session,
            runtime.secrets,
            profiles.ProfileInput(
                name="Orders",
                host="localhost" if scenario.security != "none" else "127.0.0.1",
                port=port,
                security=scenario.security,
                from_address="orders@example.com",
                ca_bundle=str(certificates.ca_file),
                connect_timeout=1.0,
                command_timeout=2.0,
            ),
        )
        settings = connection_settings(profile, runtime.secrets)
        message_pk = enqueue(
            session,
            MessageRequest.model_validate(
                {
                    "profile": "Orders",
                    "to": ["bob@example.com"],
                    "subject": "Order 42",
                    "text": "Shipped.",
                }
            ),
        ).id

    tested = asyncio.run(
        send_test_email("Orders", settings, "orders@example.com", "bob@example.com")
    )
    asyncio.run(Worker(runtime).drain())
    with transaction(runtime.sessions) as session:
        message = session.get(OutboxMessage, message_pk)
        assert message is not None
        delivered = message_view(message)

    assert tested.diagnosis == scenario.expected_id
    assert delivered["last_error"]["id"] == scenario.expected_id
    assert delivered["last_error"]["transient"] is scenario.transient
    assert delivered["last_error"]["step"] == tested.step
    assert delivered["last_error"]["fix"] == tested.fix
    # A permanent failure before MAIL FROM is the profile's: held, not failed.
    profile_level = tested.step in ("connect", "greeting", "ehlo", "starttls", "auth")
    if scenario.transient:
        expected_status, expected_recipient = "queued", "deferred"
    elif profile_level:
        expected_status, expected_recipient = "held", "pending"
    else:
        expected_status, expected_recipient = "failed", "failed"
    assert delivered["status"] == expected_status
    assert delivered["recipients"][0]["status"] == expected_recipient
