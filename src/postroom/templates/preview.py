"""Preview: a template rendered with sample data, as it would be sent."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

from sqlalchemy.orm import Session

from postroom.domain.notifications import Template
from postroom.domain.profiles import find_profile, hold_reason
from postroom.errors import InvalidInputError
from postroom.mime.build import BuiltMessage
from postroom.templates.render import RenderLimits, event_context, render_message
from postroom.templates.store import profile_of, sender_of
from postroom.templates.validation import normalize_locale


def describe_message(built: BuiltMessage, *, include_raw: bool) -> dict[str, Any]:
    """Return a built message's envelope, decoded headers and parts."""
    message = email.message_from_bytes(built.raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    parts = []
    for part in message.walk():
        entry: dict[str, Any] = {"content_type": part.get_content_type()}
        if part.is_multipart():
            parts.append(entry)
            continue
        payload = part.get_payload(decode=True)
        entry["size"] = len(payload) if isinstance(payload, bytes) else 0
        disposition = part.get_content_disposition()
        if disposition:
            entry["disposition"] = disposition
        if part.get_filename():
            entry["filename"] = part.get_filename()
        if part["Content-ID"]:
            entry["content_id"] = str(part["Content-ID"]).strip("<>")
        if part.get_content_maintype() == "text" and disposition != "attachment":
            entry["content"] = part.get_content().replace("\r\n", "\n")
        parts.append(entry)

    view: dict[str, Any] = {
        "message_id": built.message_id,
        "subject": built.subject,
        "size": len(built.raw),
        "smtputf8": built.smtputf8,
        "envelope": {
            "sender": built.envelope_sender,
            "recipients": [
                {"address": address, "kind": kind} for address, kind in built.recipients
            ],
        },
        "headers": [
            {"name": name, "value": str(value)} for name, value in message.items()
        ],
        "parts": parts,
    }
    if include_raw:
        view["raw"] = built.raw.decode("utf-8", "replace")
    return view


def preview_template(
    session: Session,
    limits: RenderLimits,
    template: Template,
    *,
    data: dict[str, Any] | None,
    client: str | None = None,
    locale: str | None = None,
    include_raw: bool = False,
) -> dict[str, Any]:
    """Render ``template`` with ``data`` (default: its sample data); queue nothing."""
    sample = template.sample_data if data is None else data
    if sample is None:
        raise InvalidInputError(
            "is required because the template has no sample_data; send the event "
            "data to preview with",
            field="data",
        )
    context = event_context(
        sample,
        event_type=template.event_type,
        client=client if client is not None else template.client,
        locale=normalize_locale(locale) or template.locale,
    )
    built = render_message(template, context, sender_of(session, template), limits)
    profile_name = profile_of(template)
    return {
        "template": template.name,
        "profile": profile_name,
        "held_reason": hold_reason(find_profile(session, profile_name), profile_name),
        "message": describe_message(built, include_raw=include_raw),
    }
