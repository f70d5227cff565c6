"""Claims reuse the profiles they loaded until a profile's row changes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, text

from postroom.domain.db import transaction
from postroom.domain.models import Profile
from postroom.outbox import store
from postroom.outbox.dbcall import PostgresConnection
from postroom.outbox.statements import POSTGRES, statements_for
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


def test_failed_claim_gives_messages_back(
    pg_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL the claim's UPDATE commits on its own, before the claim
    # reads recipients and loads profiles.
    add_profile(pg_runtime, 2525)
    message_pk = queue(pg_runtime)

    def unavailable(*_args: Any) -> list[Profile]:
        raise RuntimeError("the shared pool timed out")

    monkeypatch.setattr(store, "load_profiles", unavailable)
    with pytest.raises(RuntimeError, match="shared pool"):
        claim(pg_runtime, "worker")

    shown = view(pg_runtime, message_pk)
    assert shown["status"] == "queued"
    assert shown["attempt_count"] == 0


@pytest.mark.parametrize("active", [True, False])
def test_hold_checks_profile_again(any_runtime: Runtime, active: bool) -> None:
    # The claim found the profile unable to send; by the time the hold is
    # written an operator may have fixed it.
    add_profile(any_runtime, 2525)
    messages, _profiles = claim_one(any_runtime, store.ProfileCache(), "store")
    update_profile(any_runtime, is_active=active)

    store.hold_claimed(any_runtime.sessions, [messages[0].id], "Orders", "worker")

    shown = view(any_runtime, messages[0].id)
    assert shown["status"] == ("queued" if active else "held")


def test_profile_rows_survive_added_column(pg_runtime: Runtime) -> None:
    # psycopg prepares a statement after five runs; "SELECT *" would then
    # fail once a migration of a newer version adds a column.
    add_profile(pg_runtime, 2525)
    sql, parameters = POSTGRES.profile_rows_statement(["Orders"])

    async def main() -> tuple[int, int]:
        connection = PostgresConnection(pg_runtime.engine.url)
        try:
            for _run in range(6):
                before = await connection.execute(sql, parameters)
            with pg_runtime.engine.begin() as admin:
                admin.execute(text("ALTER TABLE profiles ADD COLUMN added int"))
            after = await connection.execute(sql, parameters)
        finally:
            await connection.close()
        return len(before[0]), len(after[0])

    before, after = asyncio.run(main())

    assert before == after
