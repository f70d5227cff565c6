"""Templates: storage, with every check made before anything is saved."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from postroom.domain.models import SYSTEM_PROFILE_NAMES
from postroom.domain.notifications import Template
from postroom.domain.profiles import find_profile
from postroom.errors import ConflictError, InvalidInputError, NotFoundError
from postroom.templates import spec
from postroom.templates.render import RenderLimits, check_template
from postroom.templates.validation import normalize

DEFAULT_PROFILE = SYSTEM_PROFILE_NAMES[0]


def profile_of(template: Template) -> str:
    """Return the name of the profile a template sends through."""
    return template.profile_name or DEFAULT_PROFILE


def sender_of(session: Session, template: Template) -> str:
    """Return the From address for a template's messages.

    The template's own From address wins; otherwise its profile's. Raises
    InvalidInputError when neither exists, because a message cannot be
    built (or held) without one.
    """
    if template.from_address:
        return template.from_address
    name = profile_of(template)
    profile = find_profile(session, name)
    if profile is not None and profile.from_address:
        return profile.from_address
    reason = "does not exist" if profile is None else "has no From address"
    # NOTE: saving a template checks this, but a profile deleted or stripped
    # of its From address later makes events for the template fail with 409
    # instead of being held, because a held message is already built.
    raise InvalidInputError(
        f"is required because email profile {name!r} {reason}; set a From "
        "address on the template or on the profile",
        field="from_address",
    )


def list_templates(
    session: Session,
    *,
    event_type: str | None = None,
    client: str | None = None,
    is_active: bool | None = None,
) -> list[Template]:
    """List templates by name; ``client`` also includes all-client templates."""
    query = select(Template).order_by(Template.name)
    if event_type is not None:
        query = query.where(Template.event_type == event_type)
    if client is not None:
        query = query.where(or_(Template.client == client, Template.client.is_(None)))
    if is_active is not None:
        query = query.where(Template.is_active == is_active)
    return list(session.scalars(query))


def find_template(session: Session, name: str) -> Template | None:
    return session.scalars(select(Template).where(Template.name == name)).one_or_none()


def get_template(session: Session, name: str) -> Template:
    template = find_template(session, name)
    if template is None:
        raise NotFoundError(f"no template named {name!r}", field="name")
    return template


def _validated(
    session: Session, state: dict[str, Any], limits: RenderLimits
) -> dict[str, Any]:
    state = normalize(state)
    state["variables"] = check_template(state, limits)
    sender_of(session, Template(**state))
    return state


def create_template(
    session: Session, limits: RenderLimits, data: spec.TemplateInput
) -> Template:
    """Validate, compile and store a new template."""
    state = _validated(session, spec.defaults() | spec.given(data), limits)
    if find_template(session, state["name"]) is not None:
        raise ConflictError(
            f"a template named {state['name']!r} already exists; choose another "
            "name or update that one",
            field="name",
        )
    template = Template(**state)
    session.add(template)
    session.flush()
    return template


def update_template(
    session: Session, limits: RenderLimits, name: str, data: spec.TemplateInput
) -> Template:
    """Apply the given fields, then validate and compile the whole template."""
    template = get_template(session, name)
    current = {field: getattr(template, field) for field in spec.FIELDS}
    state = _validated(session, current | spec.given(data), limits)
    if state["name"] != template.name and find_template(session, state["name"]):
        raise ConflictError(
            f"a template named {state['name']!r} already exists; choose another name",
            field="name",
        )
    for field, value in state.items():
        setattr(template, field, value)
    session.flush()
    return template


def delete_template(session: Session, name: str) -> None:
    # Messages already queued keep their bytes, and events keep the
    # template's name, so nothing else refers to the row.
    session.delete(get_template(session, name))


def preview_state(
    session: Session, limits: RenderLimits, data: spec.TemplateInput
) -> Template:
    """Validate an unsaved template and return it as a detached Template.

    Name and event type may be left out: a preview needs neither.
    """
    state = spec.defaults() | {"name": "unsaved", "event_type": "preview"}
    state = normalize(state | spec.given(data))
    state["variables"] = check_template(state, limits)
    return Template(**state)
