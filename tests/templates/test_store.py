"""Saving templates: validation, compilation, variables, From address."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.domain.notifications import Template
from postroom.errors import ConflictError, InvalidInputError, NotFoundError
from postroom.runtime import Runtime
from postroom.templates import store
from postroom.templates.render import RenderLimits
from postroom.templates.spec import TemplateInput, TemplateView
from tests.notifications import add_profile, add_template, shipped_template


def stored_count(runtime: Runtime) -> int:
    with transaction(runtime.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(Template)) or 0)


def update(runtime: Runtime, name: str, **changes: Any) -> TemplateView:
    limits = RenderLimits.from_settings(runtime.settings)
    with transaction(runtime.sessions) as session:
        template = store.update_template(
            session, limits, name, TemplateInput.model_validate(changes)
        )
        return TemplateView.of(template)


def test_crud_round_trip(any_runtime: Runtime) -> None:
    add_profile(any_runtime, 2525)
    created = add_template(
        any_runtime,
        client="acme",
        locale="de_CH",
        cc=["ops@shop.example"],
        headers={"X-Order": "{{ order.id }}"},
        attachments=[{"source": "order.invoice", "content_type": "application/pdf"}],
        list_unsubscribe=["https://shop.example/unsubscribe/{{ customer.id }}"],
        list_unsubscribe_post=True,
    )

    assert created.locale == "de-ch"
    assert created.profile == "Shop"
    assert created.variables == [
        "customer.email",
        "customer.id",
        "customer.name",
        "order.id",
        "order.invoice",
        "order.items",
    ]

    changed = update(any_runtime, "shipped", subject="Shipped: {{ order.number }}")
    assert changed.subject == "Shipped: {{ order.number }}"
    assert "order.number" in changed.variables
    assert changed.cc == ["ops@shop.example"]

    cleared = update(any_runtime, "shipped", client="", locale="")
    assert cleared.client is None
    assert cleared.locale is None

    with transaction(any_runtime.sessions) as session:
        store.delete_template(session, "shipped")
    with transaction(any_runtime.sessions) as session, pytest.raises(NotFoundError):
        store.get_template(session, "shipped")


def test_name_taken_is_conflict(runtime: Runtime) -> None:
    add_profile(runtime, 2525)
    add_template(runtime)

    with pytest.raises(ConflictError) as caught:
        add_template(runtime)

    assert caught.value.field == "name"


def test_syntax_error_names_part_and_line(runtime: Runtime) -> None:
    add_profile(runtime, 2525)

    with pytest.raises(InvalidInputError) as caught:
        add_template(runtime, html_body="<p>Hello</p>\n{% for item in order.items %}")

    assert caught.value.field == "html_body"
    assert caught.value.message.startswith(
        "html_body line 2: Unexpected end of template"
    )
    assert stored_count(runtime) == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "a/b"}, "name"),
        ({"event_type": ""}, "event_type"),
        ({"event_type": "order shipped"}, "event_type"),
        ({"subject": ""}, "subject"),
        ({"subject": "Hi\r\nBcc: eve@evil.example"}, "subject"),
        ({"subject": "{{ order.id "}, "subject"),
        ({"html_body": "", "text_body": None}, "html_body"),
        ({"to": []}, "to"),
        ({"to": ["not an address"]}, "to[0]"),
        ({"to": ["bob@example.com\r\nBcc: eve@evil.example"]}, "to[0]"),
        ({"to": [{"address": "Bob <bob@example.com>"}]}, "to[0].address"),
        ({"to": ["{{ customer.email }}"], "cc": ["{{ x }"]}, "cc[0]"),
        ({"from": "Shop\r\n <orders@shop.example>"}, "from_address"),
        ({"headers": {"Bcc": "eve@evil.example"}}, "headers.Bcc"),
        ({"headers": {"X-A": "1\r\nBcc: eve@evil.example"}}, "headers.X-A"),
        ({"headers": {"X A": "1"}}, "headers.X A"),
        (
            {"headers": {"List-Unsubscribe": "<https://x.example>"}},
            "headers.List-Unsubscribe",
        ),
        ({"list_unsubscribe": ["javascript:alert(1)"]}, "list_unsubscribe[0]"),
        ({"list_unsubscribe_post": True}, "list_unsubscribe_post"),
        ({"locale": "not a locale"}, "locale"),
        ({"attachments": [{"source": ""}]}, "attachments[0].source"),
        ({"attachments": [{"source": "a b c"}]}, "attachments[0].source"),
        (
            {"attachments": [{"source": "x", "content_type": "pdf"}]},
            "attachments[0].content_type",
        ),
        ({"profile": "Nowhere"}, "from_address"),
    ],
)
def test_invalid_template_rejected(
    runtime: Runtime, changes: dict[str, Any], field: str
) -> None:
    add_profile(runtime, 2525)

    with pytest.raises(InvalidInputError) as caught:
        add_template(runtime, **changes)

    assert caught.value.field == field
    assert stored_count(runtime) == 0


def test_update_validates_whole_template(runtime: Runtime) -> None:
    add_profile(runtime, 2525)
    add_template(runtime)

    with pytest.raises(InvalidInputError) as caught:
        update(runtime, "shipped", html_body="", text_body="")

    assert caught.value.field == "html_body"
    with transaction(runtime.sessions) as session:
        assert store.get_template(session, "shipped").html_body


def test_from_needed_for_default_profile(runtime: Runtime) -> None:
    with pytest.raises(InvalidInputError) as caught:
        add_template(runtime, profile=None)

    assert caught.value.field == "from_address"
    assert "'DefaultNotificationProfile' has no From address" in caught.value.message

    created = add_template(runtime, profile=None, from_address="orders@shop.example")
    assert created.profile is None
    assert created.from_address == "orders@shop.example"


def test_from_taken_from_profile_later(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as session:
        profiles.update_profile(
            session,
            runtime.secrets,
            "DefaultNotificationProfile",
            profiles.ProfileInput(from_address="Shop <orders@shop.example>"),
        )

    assert add_template(runtime, profile=None).from_address is None


def test_list_filters(runtime: Runtime) -> None:
    add_profile(runtime, 2525)
    add_template(runtime, name="a")
    add_template(runtime, name="b", client="acme")
    add_template(runtime, name="c", client="globex", event_type="order.cancelled")

    with transaction(runtime.sessions) as session:
        acme = [t.name for t in store.list_templates(session, client="acme")]
        shipped = [
            t.name for t in store.list_templates(session, event_type="order.shipped")
        ]

    assert acme == ["a", "b"]
    assert shipped == ["a", "b"]


def test_sample_template_is_valid() -> None:
    assert TemplateInput.model_validate(shipped_template()).name == "shipped"
