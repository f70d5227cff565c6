"""Reply parsing: enhanced status codes and provider queue ids."""

from __future__ import annotations

import pytest

from postroom.smtp.replies import parse_enhanced_status, parse_queue_id


@pytest.mark.parametrize(
    ("text", "queue_id"),
    [
        ("2.0.0 Ok: queued as 4Fq1Xb0v2Kz9", "4Fq1Xb0v2Kz9"),
        ("2.0.0 OK  1700000000 a1-2b3c.42 - gsmtp", "a1-2b3c.42"),
        ("2.6.0 <x@y> [InternalId=123456789] Queued mail for delivery", "123456789"),
        ("2.0.0 OK id=1rXyZ-000Abc-12", "1rXyZ-000Abc-12"),
        ("2.0.0 Thanks", None),
    ],
)
def test_queue_id_found(text: str, queue_id: str | None) -> None:
    assert parse_queue_id(text) == queue_id


def test_overlong_queue_id_is_cut() -> None:
    queue_id = parse_queue_id("2.0.0 Ok: queued as " + "A" * 5000)

    assert queue_id == "A" * 200


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("5.7.8 Authentication failed", "5.7.8"),
        ("Authentication failed", None),
        ("4.7.500 Busy", "4.7.500"),
    ],
)
def test_enhanced_status(text: str, status: str | None) -> None:
    assert parse_enhanced_status(text) == status
