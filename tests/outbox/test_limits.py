"""Rate accounting shared through the database, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from postroom.outbox.lane import split_recipients
from postroom.outbox.limits import reserve_sends
from postroom.outbox.store import ClaimedRecipient
from postroom.runtime import Runtime

NOW = datetime(2026, 3, 29, 0, 59, 59, 700_000, tzinfo=UTC)


def test_reservation_stops_at_limit(any_runtime: Runtime) -> None:
    rates = {"minute": 3}

    first = reserve_sends(any_runtime.sessions, "Orders", rates, 2, NOW)
    second = reserve_sends(any_runtime.sessions, "Orders", rates, 2, NOW)
    third = reserve_sends(any_runtime.sessions, "Orders", rates, 1, NOW)
    next_minute = reserve_sends(
        any_runtime.sessions, "Orders", rates, 2, NOW + timedelta(seconds=1)
    )

    assert first.granted == 2
    assert first.retry_at is None
    assert second.granted == 1
    assert second.retry_at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert third.granted == 0
    assert third.retry_at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert next_minute.granted == 2


def test_every_period_must_allow_the_send(any_runtime: Runtime) -> None:
    rates = {"second": 5, "day": 6}

    first = reserve_sends(any_runtime.sessions, "Orders", rates, 10, NOW)
    later = reserve_sends(
        any_runtime.sessions, "Orders", rates, 10, NOW + timedelta(seconds=2)
    )
    other_profile = reserve_sends(any_runtime.sessions, "Billing", rates, 10, NOW)

    assert first.granted == 5
    assert first.retry_at == datetime(2026, 3, 29, 1, 0, 0, tzinfo=UTC)
    assert later.granted == 1
    assert later.retry_at == datetime(2026, 3, 30, tzinfo=UTC)
    assert other_profile.granted == 5


def test_no_rates_grants_everything(any_runtime: Runtime) -> None:
    assert reserve_sends(any_runtime.sessions, "Orders", {}, 40, NOW).granted == 40


def test_split_recipients_keeps_order() -> None:
    recipients = [
        ClaimedRecipient(index, f"r{index}@example.com") for index in range(5)
    ]

    assert split_recipients(recipients, None) == [recipients]
    assert split_recipients(recipients, 5) == [recipients]
    assert split_recipients(recipients, 2) == [
        recipients[0:2],
        recipients[2:4],
        recipients[4:5],
    ]
