"""Claims reuse the profiles they loaded until a profile's row changes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from postroom.domain.db import transaction
from postroom.domain.models import Profile
from postroom.outbox import store
from postroom.outbox.statements import statements_for
from postroom.runtime import Runtime

from .helpers import add_profile, claim, queue, view


@pytest.fixture(params=["store", "worker"])
def path(request: pytest.FixtureRequest) -> str:
    """Which claim: the store function, or the worker's."""
    return str(request.param)


def claim_one(
    runtime: Runtime, cache: store.ProfileCache, path: str
) -> tuple[list[store.ClaimedMessage], dict[str, Profile]]:
    queue(runtime)
    return claim(runtime, path, profile_cache=cache)


def update_profile(runtime: Runtime, **values: Any) -> None:
    with transaction(runtime.sessions) as session:
        profile = session.scalars(select(Profile).where(Profile.name == "Orders")).one()
        for name, value in values.items():
            setattr(profile, name, value)


def test_unchanged_profile_is_not_loaded_again(any_runtime: Runtime, path: str) -> None:
    add_profile(any_runtime, 2525)
    cache = store.ProfileCache()

    _messages, first = claim_one(any_runtime, cache, path)
    _messages, second = claim_one(any_runtime, cache, path)

    assert second["Orders"] is first["Orders"]


def test_changed_profile_is_loaded_again(any_runtime: Runtime, path: str) -> None:
    add_profile(any_runtime, 2525)
    cache = store.ProfileCache()
    _messages, first = claim_one(any_runtime, cache, path)

    update_profile(any_runtime, port=2626)
    _messages, second = claim_one(any_runtime, cache, path)
    # Changed by SQL, so its updated_at stays: the whole row is compared.
    with transaction(any_runtime.sessions) as session:
        session.execute(text("UPDATE profiles SET port = 2727 WHERE name = 'Orders'"))
    _messages, third = claim_one(any_runtime, cache, path)

    assert first["Orders"].port == 2525
    assert second["Orders"].port == 2626
    assert third["Orders"].port == 2727


def test_deactivated_profile_holds_later_claims(
    any_runtime: Runtime, path: str
) -> None:
    add_profile(any_runtime, 2525)
    cache = store.ProfileCache()
    sent, _profiles = claim_one(any_runtime, cache, path)

    update_profile(any_runtime, is_active=False)
    later = queue(any_runtime)
    claimed_after, _profiles = claim(any_runtime, path, profile_cache=cache)

    assert [message.id for message in sent] != []
    assert claimed_after == []
    assert view(any_runtime, sent[0].id)["status"] == "sending"
    assert view(any_runtime, later)["status"] == "held"


def test_profile_kept_after_rolled_back_claim(any_runtime: Runtime, path: str) -> None:
    add_profile(any_runtime, 2525)
    cache = store.ProfileCache()

    # Loaded in a claim whose transaction then fails and is rolled back.
    with pytest.raises(RuntimeError), transaction(any_runtime.sessions) as session:
        dialect = session.get_bind().dialect.name
        cursor = store._cursor(session)
        cache.profiles(session, statements_for(dialect), cursor, {"Orders"})
        raise RuntimeError("the claim failed after loading the profile")
    _messages, profiles = claim_one(any_runtime, cache, path)

    assert profiles["Orders"].port == 2525
