"""Events on SQLite and PostgreSQL: matching, fan-out, held messages, idempotency."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from postroom.clock import utcnow
from postroom.devserver.sink import SinkServer
from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.models import OutboxMessage
from postroom.domain.notifications import Event, EventMessage, IdempotencyKey
from postroom.errors import ConflictError, InvalidInputError
from postroom.events.service import record_events
from postroom.outbox.worker import Worker
from postroom.runtime import Runtime
from tests.notifications import ORDER, add_profile, add_template, event, send
from tests.peers.scripted import ScriptedServer


def count(runtime: Runtime, model: Any) -> int:
    with transaction(runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def message(runtime: Runtime, message_pk: int) -> OutboxMessage:
    with transaction(runtime.sessions) as session:
        found = session.get(OutboxMessage, message_pk)
        assert found is not None
        return found


def drain(runtime: Runtime) -> int:
    return asyncio.run(Worker(runtime).drain())


def test_event_reaches_server_through_template_profile(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    shop = start_sink()
    other = start_sink()
    add_profile(any_runtime, shop.port)
    add_profile(any_runtime, other.port, name="Other")
    add_template(any_runtime, bcc=["audit@shop.example"])

    (result,) = send(any_runtime, event())
    drain(any_runtime)

    assert result.answer["detail"] == "1 message queued"
    assert len(result.answer["message_ids"]) == 1
    assert other.handler.messages == []
    (received,) = shop.handler.messages
    assert received.mail_from == "orders@shop.example"
    assert received.rcpt_tos == ["juergen@example.com", "audit@shop.example"]
    parsed = email.message_from_bytes(received.content, policy=email.policy.default)
    assert parsed["Subject"] == "Order 42 has shipped"
    assert parsed["To"].addresses[0].display_name == "Jürgen Müller"
    assert "Bcc" not in parsed
    assert (
        parsed.get_body(("html",))
        .get_content()
        .startswith("<p>Hello Jürgen Müller,</p>")
    )
    assert "- Teapot" in parsed.get_body(("plain",)).get_content()
    assert message(any_runtime, result.answer["message_ids"][0]).status == "sent"


def test_every_matching_template_queues_one(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    add_profile(any_runtime, start_sink().port)
    add_template(any_runtime, name="all-clients")
    add_template(any_runtime, name="acme-only", client="acme")
    add_template(any_runtime, name="other-client", client="globex")
    add_template(any_runtime, name="inactive", is_active=False)
    add_template(any_runtime, name="other-type", event_type="order.cancelled")
    add_template(any_runtime, name="german", locale="de")
    add_template(any_runtime, name="french", locale="fr")

    (swiss,) = send(any_runtime, event(client="acme", locale="de-CH"))
    (plain,) = send(any_runtime, event())

    templates = [item["template"] for item in swiss.answer["messages"]]
    assert templates == ["acme-only", "all-clients", "german"]
    assert len(set(swiss.answer["message_ids"])) == 3
    assert [item["template"] for item in plain.answer["messages"]] == ["all-clients"]


def test_no_match_says_so(any_runtime: Runtime) -> None:
    (result,) = send(any_runtime, event(type="ticket.answered", client="acme"))

    assert result.answer["message_ids"] == []
    assert result.answer["detail"] == (
        "no active template matches event type 'ticket.answered' for client "
        "'acme'; nothing was queued"
    )
    assert count(any_runtime, Event) == 1
    assert count(any_runtime, OutboxMessage) == 0


def test_render_failure_stores_nothing(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    add_profile(any_runtime, start_sink().port)
    add_template(any_runtime, name="good")
    add_template(
        any_runtime, name="needs-tracking", text_body="Track {{ tracking.url }}"
    )

    with pytest.raises(InvalidInputError) as caught:
        send(any_runtime, event(idempotency_key="k-1"))

    assert caught.value.field == "data"
    assert "template 'needs-tracking': text_body line 1" in caught.value.message
    assert "'tracking' is undefined" in caught.value.message
    assert count(any_runtime, Event) == 0
    assert count(any_runtime, OutboxMessage) == 0
    assert count(any_runtime, IdempotencyKey) == 0


def test_held_until_profile_active(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    add_profile(any_runtime, server.port, is_active=False)
    add_template(any_runtime)

    (result,) = send(any_runtime, event())
    drain(any_runtime)
    (held,) = result.answer["messages"]

    assert held["status"] == "held"
    assert held["held_reason"] == "email profile 'Shop' is inactive"
    assert result.answer["detail"] == (
        "0 messages queued, 1 held because email profile 'Shop' is inactive"
    )
    assert server.handler.messages == []

    with transaction(any_runtime.sessions) as session:
        profiles.update_profile(
            session, any_runtime.secrets, "Shop", profiles.ProfileInput(is_active=True)
        )
    drain(any_runtime)

    assert message(any_runtime, held["id"]).status == "sent"
    assert len(server.handler.messages) == 1


def test_held_until_profile_created(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    add_template(any_runtime, profile="Later", from_address="orders@shop.example")

    (result,) = send(any_runtime, event())
    (held,) = result.answer["messages"]

    assert held["held_reason"] == "email profile 'Later' does not exist"
    server = start_sink()
    add_profile(any_runtime, server.port, name="Later")
    drain(any_runtime)
    assert message(any_runtime, held["id"]).status == "sent"
    assert server.handler.messages[0].mail_from == "orders@shop.example"


def test_default_profile_used_without_one(any_runtime: Runtime) -> None:
    add_template(any_runtime, profile="", from_address="orders@shop.example")

    (result,) = send(any_runtime, event())

    (held,) = result.answer["messages"]
    assert held["profile"] == "DefaultNotificationProfile"
    assert (
        held["held_reason"] == "email profile 'DefaultNotificationProfile' is inactive"
    )


def test_same_key_returns_first_answer(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    add_profile(any_runtime, start_sink().port)
    add_template(any_runtime)

    (first,) = send(any_runtime, event(idempotency_key="order-42-shipped"))
    (second,) = send(any_runtime, event(idempotency_key="order-42-shipped"))

    assert first.replayed is False
    assert second.replayed is True
    assert second.answer == first.answer
    assert count(any_runtime, Event) == 1
    assert count(any_runtime, OutboxMessage) == 1


def test_same_key_other_body_rejected(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    add_profile(any_runtime, start_sink().port)
    add_template(any_runtime)
    send(any_runtime, event(idempotency_key="k"))
    changed = {**ORDER, "order": {"id": 43, "items": []}}

    with pytest.raises(InvalidInputError) as caught:
        send(any_runtime, event(idempotency_key="k", data=changed))

    assert caught.value.field == "idempotency_key"
    assert "already used for a different event" in caught.value.message
    assert count(any_runtime, OutboxMessage) == 1


def test_key_kept_at_least_a_day(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    add_profile(any_runtime, start_sink().port)
    add_template(any_runtime)
    send(any_runtime, event(idempotency_key="k"))

    with transaction(any_runtime.sessions) as session:
        row = session.get(IdempotencyKey, "k")
        assert row is not None
        assert row.expires_at - row.created_at >= timedelta(hours=24)


def test_expired_key_processed_again(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    add_profile(any_runtime, start_sink().port)
    add_template(any_runtime)
    (first,) = send(any_runtime, event(idempotency_key="k"))
    with transaction(any_runtime.sessions) as session:
        session.execute(
            update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1))
        )

    (second,) = send(any_runtime, event(idempotency_key="k"))

    assert second.replayed is False
    assert second.answer["event_id"] != first.answer["event_id"]
    assert count(any_runtime, OutboxMessage) == 2
    assert count(any_runtime, IdempotencyKey) == 1


def test_batch_is_all_or_nothing(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    add_profile(any_runtime, start_sink().port)
    add_template(any_runtime)
    good = event(idempotency_key="a")
    bad = event(idempotency_key="b", data={"order": {"id": 1}})

    with pytest.raises(InvalidInputError):
        send(any_runtime, good, bad)

    assert count(any_runtime, Event) == 0
    assert count(any_runtime, OutboxMessage) == 0
    assert count(any_runtime, IdempotencyKey) == 0


def test_batch_repeats_inside_and_across(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    add_profile(any_runtime, start_sink().port)
    add_template(any_runtime)
    (earlier,) = send(any_runtime, event(idempotency_key="a"))

    results = send(
        any_runtime,
        event(idempotency_key="a"),
        event(idempotency_key="b"),
        event(idempotency_key="b"),
        event(),
    )

    assert [result.replayed for result in results] == [True, False, True, False]
    assert results[0].answer == earlier.answer
    assert results[2].answer == results[1].answer
    assert count(any_runtime, Event) == 3
    assert count(any_runtime, EventMessage) == 3


def test_header_injection_from_event_data(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    add_profile(any_runtime, server.port)
    add_template(
        any_runtime,
        subject="Order {{ order.id }} for {{ customer.name }}",
        headers={"X-Order": "{{ order.id }}"},
    )
    injected = "Eve\r\nBcc: eve@evil.example\r\n\r\n.\r\nMAIL FROM:<eve@evil.example>"
    data = {
        "order": {"id": "7\r\nBcc: eve@evil.example", "items": []},
        "customer": {"name": injected, "email": "bob@example.com"},
    }

    send(any_runtime, event(data=data))
    drain(any_runtime)

    (received,) = server.handler.messages
    assert received.rcpt_tos == ["bob@example.com"]
    parsed = email.message_from_bytes(received.content, policy=email.policy.default)
    assert "Bcc" not in parsed
    assert parsed["X-Order"] == "7 Bcc: eve@evil.example"
    assert parsed["Subject"] == (
        "Order 7 Bcc: eve@evil.example for Eve Bcc: eve@evil.example  . "
        "MAIL FROM:<eve@evil.example>"
    )
    assert parsed["To"].addresses[0].addr_spec == "bob@example.com"


def test_address_injection_from_event_data_rejected(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    add_profile(any_runtime, start_sink().port)
    add_template(any_runtime, to=["{{ customer.email }}"])
    customer = {"name": "Bob", "email": "bob@example.com\r\nBcc: eve@evil.example"}
    data = {**ORDER, "customer": customer}

    with pytest.raises(InvalidInputError) as caught:
        send(any_runtime, event(data=data))

    assert caught.value.field == "data"
    assert "to[0]" in caught.value.message
    assert count(any_runtime, OutboxMessage) == 0


def test_international_address_uses_smtputf8(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    add_profile(any_runtime, server.port)
    add_template(any_runtime)
    customer = {"name": "Jürgen", "email": "jürgen@bücher.example"}

    (result,) = send(any_runtime, event(data={**ORDER, "customer": customer}))
    drain(any_runtime)

    assert message(any_runtime, result.answer["message_ids"][0]).smtputf8 is True
    (received,) = server.handler.messages
    assert received.rcpt_tos == ["jürgen@xn--bcher-kva.example"]


def test_international_address_without_smtputf8_fails_clearly(
    any_runtime: Runtime, start_scripted: Callable[..., ScriptedServer]
) -> None:
    server = start_scripted()
    add_profile(any_runtime, server.port)
    add_template(any_runtime)
    customer = {"name": "Jürgen", "email": "jürgen@bücher.example"}

    (result,) = send(any_runtime, event(data={**ORDER, "customer": customer}))
    drain(any_runtime)

    failed = message(any_runtime, result.answer["message_ids"][0])
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert failed.last_error["id"] == "smtputf8-not-offered"
    assert "SMTPUTF8" in failed.last_error["cause"]
    assert server.messages == []


def test_header_injection_from_profile_rejected(any_runtime: Runtime) -> None:
    with pytest.raises(InvalidInputError) as caught:
        add_profile(
            any_runtime,
            2525,
            from_address="Shop\r\nBcc: eve@evil.example <o@shop.example>",
        )

    assert caught.value.field == "from_address"


def test_profile_display_name_encoded_safely(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    add_profile(
        any_runtime,
        server.port,
        from_address='"Shop, \\"Ltd\\" <eve@evil.example>" <orders@shop.example>',
    )
    add_template(any_runtime)

    send(any_runtime, event())
    drain(any_runtime)

    (received,) = server.handler.messages
    parsed = email.message_from_bytes(received.content, policy=email.policy.default)
    assert "Bcc" not in parsed
    assert parsed["From"].addresses[0].addr_spec == "orders@shop.example"
    assert len(parsed["From"].addresses) == 1
    assert parsed["From"].addresses[0].display_name == (
        'Shop, "Ltd" <eve@evil.example>'
    )
    assert received.mail_from == "orders@shop.example"


def test_profile_without_from_later_is_conflict(any_runtime: Runtime) -> None:
    add_profile(any_runtime, 2525)
    add_template(any_runtime)
    # An inactive profile may lose its From address; a profile that
    # templates use cannot be deleted at all.
    with transaction(any_runtime.sessions) as session:
        profiles.update_profile(
            session,
            any_runtime.secrets,
            "Shop",
            profiles.ProfileInput(is_active=False, from_address=""),
        )

    with pytest.raises(ConflictError) as caught:
        send(any_runtime, event())

    assert caught.value.field == "type"
    assert "from_address is required" in caught.value.message
    assert "'Shop'" in caught.value.message
    assert count(any_runtime, Event) == 0


def test_blank_text_body_falls_back_to_html(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    server = start_sink()
    add_profile(any_runtime, server.port)
    add_template(any_runtime, text_body="{{ customer.note | default('') }}")

    send(any_runtime, event())
    drain(any_runtime)

    parsed = email.message_from_bytes(
        server.handler.messages[0].content, policy=email.policy.default
    )
    assert (
        parsed.get_body(("plain",))
        .get_content()
        .startswith("Hello Jürgen Müller,\r\n\r\n- Teapot")
    )


def test_profile_rename_moves_templates(
    any_runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    shop = start_sink()
    add_profile(any_runtime, shop.port)
    add_template(any_runtime)

    with transaction(any_runtime.sessions) as session:
        profiles.update_profile(
            session,
            any_runtime.secrets,
            "Shop",
            profiles.ProfileInput(name="Storefront"),
        )
    (result,) = send(any_runtime, event())
    drain(any_runtime)

    assert message(any_runtime, result.answer["message_ids"][0]).status == "sent"
    assert len(shop.handler.messages) == 1
    with (
        pytest.raises(ConflictError) as caught,
        transaction(any_runtime.sessions) as session,
    ):
        profiles.delete_profile(session, "Storefront")
    assert "templates 'shipped'" in caught.value.message


def test_racing_threads_queue_once_on_sqlite(
    runtime: Runtime, start_sink: Callable[..., SinkServer]
) -> None:
    # SQLite, the default database, serializes writers; the key must still
    # be claimed once when requests in one process race.
    add_profile(runtime, start_sink().port)
    add_template(runtime)
    racers = 12
    barrier = threading.Barrier(racers)

    def racer(_index: int) -> Any:
        barrier.wait(30)
        (result,) = record_events(
            runtime.sessions, runtime.settings, [event(idempotency_key="raced")]
        )
        return result

    with ThreadPoolExecutor(racers) as pool:
        results = list(pool.map(racer, range(racers)))

    assert sum(not result.replayed for result in results) == 1
    assert len({result.answer["event_id"] for result in results}) == 1
    assert count(runtime, Event) == 1
    assert count(runtime, OutboxMessage) == 1
