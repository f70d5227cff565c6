"""Provider presets: lookup, regions, and profiles created from them."""

from __future__ import annotations

import pytest

from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.presets import PRESETS, find_preset
from postroom.errors import InvalidInputError
from postroom.runtime import Runtime

REQUIRED_PROVIDERS = [
    "office365",
    "outlook",
    "gmail",
    "ses-eu-west-1",
    "sendgrid",
    "mailgun",
    "postmark",
    "brevo",
    "zoho",
    "yahoo",
    "icloud",
    "fastmail",
]


@pytest.mark.parametrize("name", REQUIRED_PROVIDERS)
def test_preset_has_settings_and_note(name: str) -> None:
    preset = find_preset(name)

    assert preset.host
    assert "REGION" not in preset.host
    assert preset.port in (465, 587)
    assert (preset.security == "tls") == (preset.port == 465)
    assert preset.note.endswith(".")


def test_office365_preset_values() -> None:
    preset = find_preset("office365")

    assert preset.host == "smtp.office365.com"
    assert preset.port == 587
    assert preset.security == "starttls"
    assert preset.mechanism == "UserPassword"
    assert "Authenticated SMTP" in preset.note


def test_ses_region_builds_host() -> None:
    preset = find_preset("ses-eu-west-1")

    assert preset.name == "ses-eu-west-1"
    assert preset.region == "eu-west-1"
    assert preset.host == "email-smtp.eu-west-1.amazonaws.com"
    assert "verified identity" in preset.note


def test_ses_without_region_is_rejected() -> None:
    with pytest.raises(InvalidInputError) as raised:
        find_preset("ses")

    assert raised.value.field == "preset"
    assert "needs a region, for example ses-us-east-1" in raised.value.message


def test_ses_unknown_region_lists_regions() -> None:
    with pytest.raises(InvalidInputError) as raised:
        find_preset("ses-mars-north-1")

    assert "'mars-north-1' is not a known region" in raised.value.message
    assert "eu-west-1" in raised.value.message


def test_regional_default_and_alias() -> None:
    assert find_preset("mailgun").host == "smtp.mailgun.org"
    assert find_preset("mailgun-eu").host == "smtp.eu.mailgun.org"
    assert find_preset("zoho-eu").host == "smtp.zoho.eu"
    assert find_preset("Microsoft365").host == "smtp.office365.com"
    assert find_preset("amazon-ses-us-east-2").host == (
        "email-smtp.us-east-2.amazonaws.com"
    )


def test_unknown_preset_names_choices() -> None:
    with pytest.raises(InvalidInputError) as raised:
        find_preset("aol")

    assert raised.value.field == "preset"
    assert "office365" in raised.value.message
    assert "ses-REGION" in raised.value.message


def test_sendgrid_preset_sets_login() -> None:
    assert find_preset("sendgrid").profile_values()["login"] == "apikey"


def test_preset_names_unique() -> None:
    names = [preset.name for preset in PRESETS]

    assert len(names) == len(set(names))


def test_profile_from_preset_with_override(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as session:
        profile = profiles.create_profile(
            session,
            runtime.secrets,
            profiles.ProfileInput(
                name="Orders",
                preset="office365",
                port=25,
                from_address="orders@example.com",
            ),
        )
        view = profiles.ProfileView.of(profile)

    assert view.host == "smtp.office365.com"
    assert view.port == 25
    assert view.security == "starttls"
    assert view.mechanism == "UserPassword"


def test_bad_preset_stores_nothing(runtime: Runtime) -> None:
    with (
        pytest.raises(InvalidInputError) as raised,
        transaction(runtime.sessions) as session,
    ):
        profiles.create_profile(
            session,
            runtime.secrets,
            profiles.ProfileInput(name="Orders", preset="ses"),
        )

    assert raised.value.field == "preset"
    with transaction(runtime.sessions) as session:
        assert profiles.find_profile(session, "Orders") is None


def test_update_applies_preset(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as session:
        profiles.create_profile(
            session,
            runtime.secrets,
            profiles.ProfileInput(
                name="Orders",
                host="relay.example.com",
                port=25,
                from_address="orders@example.com",
            ),
        )
        profile = profiles.update_profile(
            session,
            runtime.secrets,
            "Orders",
            profiles.ProfileInput(preset="fastmail"),
        )
        view = profiles.ProfileView.of(profile)

    assert view.host == "smtp.fastmail.com"
    assert view.port == 465
    assert view.security == "tls"
