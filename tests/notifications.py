"""Helpers for template and event tests: a profile, a template, an event."""

from __future__ import annotations

from typing import Any

from postroom.domain import profiles
from postroom.domain.db import transaction
from postroom.events.schema import Event, EventInput, check_event
from postroom.events.service import EventResult, record_events
from postroom.runtime import Runtime
from postroom.templates import store
from postroom.templates.render import RenderLimits
from postroom.templates.spec import TemplateInput, TemplateView

ORDER = {
    "order": {"id": 42, "items": [{"sku": "A-1", "name": "Teapot"}]},
    "customer": {"name": "Jürgen Müller", "email": "juergen@example.com"},
}


def shipped_template(**changes: Any) -> dict[str, Any]:
    template: dict[str, Any] = {
        "name": "shipped",
        "event_type": "order.shipped",
        "subject": "Order {{ order.id }} has shipped",
        "html_body": (
            "<p>Hello {{ customer.name }},</p><ul>{% for item in order.items %}"
            "<li>{{ item.name }}</li>{% endfor %}</ul>"
        ),
        "to": [{"address": "{{ customer.email }}", "name": "{{ customer.name }}"}],
        "profile": "Shop",
        "sample_data": ORDER,
    }
    template.update(changes)
    return template


def add_profile(runtime: Runtime, port: int, **changes: Any) -> None:
    values: dict[str, Any] = {
        "name": "Shop",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "Shop <orders@shop.example>",
        "connect_timeout": 2.0,
        "command_timeout": 2.0,
    }
    values.update(changes)
    with transaction(runtime.sessions) as session:
        profiles.create_profile(
            session, runtime.secrets, profiles.ProfileInput(**values)
        )


def add_template(runtime: Runtime, **changes: Any) -> TemplateView:
    limits = RenderLimits.from_settings(runtime.settings)
    data = TemplateInput.model_validate(shipped_template(**changes))
    with transaction(runtime.sessions) as session:
        return TemplateView.of(store.create_template(session, limits, data))


def event(**changes: Any) -> Event:
    values: dict[str, Any] = {"type": "order.shipped", "data": ORDER}
    values.update(changes)
    return check_event(EventInput.model_validate(values))


def send(runtime: Runtime, *events: Event) -> list[EventResult]:
    return record_events(runtime.sessions, runtime.settings, list(events))
