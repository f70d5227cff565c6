"""Template fields as callers send them and as they are shown and rendered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from postroom.domain.notifications import Template

_TEMPLATE_MARKERS = ("{{", "{%", "{#")


class RecipientEntry(BaseModel):
    """A recipient whose display name comes from data and is kept apart."""

    model_config = ConfigDict(extra="forbid")

    address: str
    name: str | None = None


Recipient = str | RecipientEntry


class AttachmentSpec(BaseModel):
    """Files taken from the event data.

    ``source`` is a Jinja expression, for example ``order.invoice``. Its
    value is one of three things. It can be an object with ``filename``,
    ``content`` (base64) or ``text``, and optionally ``content_type`` and
    ``content_id``, or a list of such objects, or a base64 string (then
    ``filename`` is required here). An empty or undefined value attaches
    nothing.
    """

    model_config = ConfigDict(extra="forbid")

    source: str
    # Template for the file name; overrides the one in the data.
    filename: str | None = None
    content_type: str | None = None
    # Shown inside the HTML body (multipart/related) as <img src="cid:...">.
    inline: bool = False
    # Template for the Content-ID of an inline file; default: the file name.
    content_id: str | None = None


class TemplateInput(BaseModel):
    """Template fields as a caller sends them.

    On update, a field that is missing or null stays as it is; an empty
    string clears an optional field.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = None
    event_type: str | None = None
    client: str | None = None
    locale: str | None = None
    subject: str | None = None
    html_body: str | None = Field(
        default=None, validation_alias=AliasChoices("html_body", "html")
    )
    text_body: str | None = Field(
        default=None, validation_alias=AliasChoices("text_body", "text")
    )
    from_address: str | None = Field(
        default=None, validation_alias=AliasChoices("from_address", "from")
    )
    to: list[Recipient] | None = None
    cc: list[Recipient] | None = None
    bcc: list[Recipient] | None = None
    reply_to: list[Recipient] | None = None
    headers: dict[str, str] | None = None
    attachments: list[AttachmentSpec] | None = None
    list_unsubscribe: list[str] | None = None
    list_unsubscribe_post: bool | None = None
    profile: str | None = Field(
        default=None, validation_alias=AliasChoices("profile", "profile_name")
    )
    is_active: bool | None = None
    sample_data: dict[str, Any] | None = None


class TemplateView(BaseModel):
    """A template as shown to callers."""

    name: str
    event_type: str
    client: str | None
    locale: str | None
    subject: str
    html_body: str | None
    text_body: str | None
    from_address: str | None
    to: list[Recipient]
    cc: list[Recipient]
    bcc: list[Recipient]
    reply_to: list[Recipient]
    headers: dict[str, str]
    attachments: list[AttachmentSpec]
    list_unsubscribe: list[str]
    list_unsubscribe_post: bool
    profile: str | None
    is_active: bool
    sample_data: dict[str, Any] | None
    variables: list[str]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, template: Template) -> TemplateView:
        values = {
            name: getattr(template, name)
            for name in cls.model_fields
            if name != "profile"
        }
        return cls.model_validate({**values, "profile": template.profile_name})


# Columns in the order they are validated; "profile" maps to profile_name.
FIELDS = (
    "name",
    "event_type",
    "client",
    "locale",
    "subject",
    "html_body",
    "text_body",
    "from_address",
    "to",
    "cc",
    "bcc",
    "reply_to",
    "headers",
    "attachments",
    "list_unsubscribe",
    "list_unsubscribe_post",
    "profile_name",
    "is_active",
    "sample_data",
)


def defaults() -> dict[str, Any]:
    return {
        "name": None,
        "event_type": None,
        "client": None,
        "locale": None,
        "subject": None,
        "html_body": None,
        "text_body": None,
        "from_address": None,
        "to": [],
        "cc": [],
        "bcc": [],
        "reply_to": [],
        "headers": {},
        "attachments": [],
        "list_unsubscribe": [],
        "list_unsubscribe_post": False,
        "profile_name": None,
        "is_active": True,
        "sample_data": None,
    }


def given(data: TemplateInput) -> dict[str, Any]:
    """Return the fields the caller set, as column names and plain values."""
    values: dict[str, Any] = {}
    for name in data.model_fields_set:
        value = getattr(data, name)
        if value is None:
            continue
        if isinstance(value, list):
            value = [
                item.model_dump(exclude_defaults=True)
                if isinstance(item, BaseModel)
                else item
                for item in value
            ]
        values["profile_name" if name == "profile" else name] = value
    return values


def is_template(source: str) -> bool:
    """Return whether a value uses Jinja syntax, so it can only be checked when rendered."""
    return any(marker in source for marker in _TEMPLATE_MARKERS)


def template_parts(state: dict[str, Any] | Template) -> dict[str, list[str]]:
    """Return every Jinja part of a template as ``{label: [kind, source]}``.

    Labels are the field paths callers see in errors, such as ``to[0]`` or
    ``headers.X-Order``.
    """

    def get(name: str) -> Any:
        return state[name] if isinstance(state, dict) else getattr(state, name)

    parts: dict[str, list[str]] = {"subject": ["text", get("subject")]}
    if get("html_body"):
        parts["html_body"] = ["html", get("html_body")]
    if get("text_body"):
        parts["text_body"] = ["text", get("text_body")]
    for field in ("to", "cc", "bcc", "reply_to"):
        for index, entry in enumerate(get(field)):
            label = f"{field}[{index}]"
            if isinstance(entry, str):
                parts[label] = ["text", entry]
                continue
            parts[f"{label}.address"] = ["text", entry["address"]]
            if entry.get("name"):
                parts[f"{label}.name"] = ["text", entry["name"]]
    for name, value in get("headers").items():
        parts[f"headers.{name}"] = ["text", value]
    for index, uri in enumerate(get("list_unsubscribe")):
        parts[f"list_unsubscribe[{index}]"] = ["text", uri]
    for index, spec in enumerate(get("attachments")):
        label = f"attachments[{index}]"
        parts[f"{label}.source"] = ["expression", spec["source"]]
        for name in ("filename", "content_id"):
            if spec.get(name):
                parts[f"{label}.{name}"] = ["text", spec[name]]
    return parts
