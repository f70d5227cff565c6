"""Find the templates an event matches and render one message for each."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from postroom.domain.notifications import Template
from postroom.errors import ConflictError, InvalidInputError
from postroom.events.schema import Event
from postroom.mime.build import BuiltMessage
from postroom.templates.render import (
    RenderLimits,
    TemplateRenderError,
    event_context,
    render_message,
)
from postroom.templates.store import profile_of, sender_of


@dataclass
class Planned:
    """A template an event matches, with what is needed to render it."""

    template: Template
    profile_name: str
    sender: str
    built: BuiltMessage | None = None


def locale_matches(template_locale: str | None, event_locale: str | None) -> bool:
    """Return whether a template's locale applies to an event's.

    A template without a locale applies to every event. One with a locale
    applies to events of that locale or a more specific one: ``de``
    matches ``de`` and ``de-ch``. An event without a locale only gets
    templates without one.
    """
    if template_locale is None:
        return True
    if event_locale is None:
        return False
    return event_locale == template_locale or event_locale.startswith(
        template_locale + "-"
    )


def matching_templates(session: Session, event: Event) -> list[Template]:
    """Return the active templates for the event's type, client and locale."""
    query = (
        select(Template)
        .where(Template.is_active.is_(True), Template.event_type == event.type)
        .order_by(Template.name)
    )
    if event.client is None:
        query = query.where(Template.client.is_(None))
    else:
        query = query.where(
            or_(Template.client.is_(None), Template.client == event.client)
        )
    return [
        template
        for template in session.scalars(query)
        if locale_matches(template.locale, event.locale)
    ]


def plan(session: Session, event: Event) -> list[Planned]:
    """Look up the matching templates and their senders in one transaction."""
    planned = []
    for template in matching_templates(session, event):
        try:
            sender = sender_of(session, template)
        except InvalidInputError as exc:
            # The event is fine; the stored configuration is not, so this is
            # a conflict an operator resolves, not invalid input.
            raise ConflictError(
                f"template {template.name!r} cannot be sent: from_address "
                f"{exc.message}",
                field=f"{event.prefix}type",
            ) from exc
        planned.append(Planned(template, profile_of(template), sender))
    return planned


def render_all(event: Event, planned: list[Planned], limits: RenderLimits) -> None:
    """Render every planned message; raise InvalidInputError on the first failure.

    Runs outside any database transaction: rendering may take up to the
    render timeout per template.
    """
    context = event_context(
        event.data,
        event_type=event.type,
        client=event.client,
        locale=event.locale,
        idempotency_key=event.idempotency_key,
    )
    for item in planned:
        try:
            item.built = render_message(item.template, context, item.sender, limits)
        except TemplateRenderError as exc:
            raise InvalidInputError(
                f"{exc.message}; fix the template or send the data it needs "
                "(nothing was queued)",
                field=f"{event.prefix}data",
            ) from exc
