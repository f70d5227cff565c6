"""Email profiles: validation, encryption at rest, system profiles."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.models import SYSTEM_PROFILE_NAMES, Profile
from postroom.errors import ConflictError, InvalidInputError, NotFoundError
from postroom.runtime import Runtime

VALID: dict[str, Any] = {
    "name": "Orders",
    "host": "smtp.example.com",
    "port": 587,
    "security": "starttls",
    "login": "orders@example.com",
    "password": "pa55-word",
    "confirm_password": "pa55-word",
    "from_address": "Orders <orders@example.com>",
}


def create(runtime: Runtime, **changes: Any) -> Profile:
    data = profiles.ProfileInput(**(VALID | changes))
    with transaction(runtime.sessions) as session:
        return profiles.create_profile(session, runtime.secrets, data)


def update(runtime: Runtime, profile_name: str, **changes: Any) -> Profile:
    with transaction(runtime.sessions) as session:
        return profiles.update_profile(
            session, runtime.secrets, profile_name, profiles.ProfileInput(**changes)
        )


def stored_rows(runtime: Runtime) -> list[tuple[Any, ...]]:
    with runtime.engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(text("SELECT * FROM profiles ORDER BY id"))
        ]


def test_system_profiles_exist_inactive(any_runtime: Runtime) -> None:
    with transaction(any_runtime.sessions) as session:
        found = {profile.name: profile for profile in profiles.list_profiles(session)}

    assert set(SYSTEM_PROFILE_NAMES) <= set(found)
    for name in SYSTEM_PROFILE_NAMES:
        assert found[name].is_system
        assert not found[name].is_active
        assert found[name].host is None


def test_password_encrypted_at_rest(any_runtime: Runtime) -> None:
    create(any_runtime)

    rows = repr(stored_rows(any_runtime))
    assert "pa55-word" not in rows
    with transaction(any_runtime.sessions) as session:
        stored = profiles.get_profile(session, "Orders")
        assert stored.password_encrypted is not None
        assert any_runtime.secrets.decrypt(stored.password_encrypted) == "pa55-word"


def test_update_without_password_keeps_it(any_runtime: Runtime) -> None:
    create(any_runtime)

    update(any_runtime, "Orders", port=465, security="tls")

    with transaction(any_runtime.sessions) as session:
        stored = profiles.get_profile(session, "Orders")
        assert stored.port == 465
        assert stored.password_encrypted is not None
        assert any_runtime.secrets.decrypt(stored.password_encrypted) == "pa55-word"


def test_view_never_contains_password(runtime: Runtime) -> None:
    profile = create(runtime)

    view = profiles.ProfileView.of(profile)

    assert view.has_password
    assert "pa55-word" not in view.model_dump_json()
    assert "password" not in view.model_dump()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"host": None}, "host"),
        ({"host": "smtp://smtp.example.com"}, "host"),
        ({"host": "smtp.example.com:587"}, "host"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"from_address": "not an address"}, "from_address"),
        ({"from_address": "a@example.com, b@example.com"}, "from_address"),
        ({"confirm_password": "different"}, "confirm_password"),
        ({"confirm_password": None}, "confirm_password"),
        ({"inbound_host": "imap.example.com"}, "inbound_port"),
        ({"inbound_port": 993}, "inbound_host"),
        (
            {"from_address": "Orders <orders@example.com>\r\nBcc: x@evil.example"},
            "from_address",
        ),
        ({"name": "Orders\nX-Injected: 1"}, "name"),
        ({"login": "user\r\nMAIL FROM:<x@y>"}, "login"),
        ({"client": "acme\n"}, "client"),
        ({"ehlo_name": "bad host name"}, "ehlo_name"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"command_timeout": 601}, "command_timeout"),
        ({"ca_bundle": "/no/such/file.pem"}, "ca_bundle"),
        ({"name": "a/b"}, "name"),
    ],
)
def test_invalid_input_names_field_and_stores_nothing(
    runtime: Runtime, changes: dict[str, Any], field: str
) -> None:
    before = stored_rows(runtime)

    with pytest.raises(InvalidInputError) as caught:
        create(runtime, **changes)

    assert caught.value.field == field
    assert stored_rows(runtime) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [("security", "ssl"), ("mechanism", "OAuth"), ("port", "abc")],
)
def test_unknown_enum_values_rejected(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        profiles.ProfileInput(**(VALID | {field: value}))


def test_name_taken(runtime: Runtime) -> None:
    create(runtime)

    with pytest.raises(ConflictError) as caught:
        create(runtime)
    assert caught.value.field == "name"


def test_failed_update_changes_nothing(any_runtime: Runtime) -> None:
    create(any_runtime)
    before = stored_rows(any_runtime)

    with pytest.raises(InvalidInputError):
        update(any_runtime, "Orders", port=70000, host="other.example.com")

    assert stored_rows(any_runtime) == before


def test_system_profile_cannot_be_deleted_or_renamed(runtime: Runtime) -> None:
    with pytest.raises(ConflictError), transaction(runtime.sessions) as session:
        profiles.delete_profile(session, "DefaultNotificationProfile")
    with pytest.raises(ConflictError):
        update(runtime, "DefaultNotificationProfile", name="Renamed")


def test_system_profile_needs_server_to_activate(runtime: Runtime) -> None:
    with pytest.raises(InvalidInputError) as caught:
        update(runtime, "DefaultDeliveryProfile", is_active=True)
    assert caught.value.field == "host"

    profile = update(
        runtime,
        "DefaultDeliveryProfile",
        host="smtp.example.com",
        from_address="reports@example.com",
        is_active=True,
    )
    assert profile.is_active


def test_rename_and_delete(runtime: Runtime) -> None:
    create(runtime)

    update(runtime, "Orders", name="Shipping")
    with transaction(runtime.sessions) as session:
        profiles.delete_profile(session, "Shipping")

    with pytest.raises(NotFoundError), transaction(runtime.sessions) as session:
        profiles.get_profile(session, "Shipping")


def test_clear_password(runtime: Runtime) -> None:
    create(runtime)

    profile = update(runtime, "Orders", clear_password=True)

    assert profile.password_encrypted is None


def test_international_from_address_accepted(runtime: Runtime) -> None:
    profile = create(runtime, from_address="Jörg Müller <jörg@bücher.example>")

    assert profile.from_address == "Jörg Müller <jörg@bücher.example>"


def test_ca_bundle_without_certificate_rejected(
    runtime: Runtime, tmp_path: Any
) -> None:
    not_a_bundle = tmp_path / "key.pem"
    not_a_bundle.write_text(
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )

    with pytest.raises(InvalidInputError) as caught:
        create(runtime, ca_bundle=str(not_a_bundle))

    assert caught.value.field == "ca_bundle"
    assert "BEGIN CERTIFICATE" in caught.value.message


def test_login_without_tls_is_warned(runtime: Runtime) -> None:
    plain = profiles.ProfileView.of(create(runtime, security="none"))
    encrypted = profiles.ProfileView.of(create(runtime, name="Secure"))

    assert any("plain text" in warning for warning in plain.warnings)
    assert not any("plain text" in warning for warning in encrypted.warnings)
