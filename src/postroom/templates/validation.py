"""The checks made when a template is saved, before anything is stored.

Only what can be checked without rendering is checked here; compiling the
Jinja parts happens in a render process (see postroom.templates.store).
"""

from __future__ import annotations

import json
import re
from typing import Any

from postroom.domain.notifications import Template
from postroom.domain.validation import (
    check_length,
    check_single_line,
    column_length,
    parse_mailbox,
)
from postroom.errors import InvalidInputError
from postroom.mime.build import RESERVED_HEADERS, check_unsubscribe_uri
from postroom.mime.parts import split_content_type
from postroom.templates.spec import AttachmentSpec, RecipientEntry, is_template

MAX_SOURCE_CHARS = 1_000_000
MAX_SAMPLE_DATA_BYTES = 1_000_000
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$")
# A BCP 47 language tag such as "de", "de-CH" or "zh-Hant-TW".
_LOCALE = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
# Headers a template sets through its own fields instead.
_UNSUBSCRIBE_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip() or None


def _single_line(value: str, field: str) -> str:
    check_single_line(value, field)
    if len(value) > MAX_SOURCE_CHARS:
        raise InvalidInputError(
            f"must be at most {MAX_SOURCE_CHARS} characters", field=field
        )
    return value


def _check_source(value: str, field: str) -> str:
    if "\x00" in value:
        raise InvalidInputError("must not contain NUL characters", field=field)
    if len(value) > MAX_SOURCE_CHARS:
        raise InvalidInputError(
            f"must be at most {MAX_SOURCE_CHARS} characters", field=field
        )
    return value


def _check_name(value: str | None) -> str:
    name = _blank_to_none(value)
    if name is None:
        raise InvalidInputError("is required", field="name")
    check_single_line(name, "name")
    check_length(name, "name", column_length(Template.name))
    if "/" in name:
        raise InvalidInputError("must not contain '/'", field="name")
    return name


def check_event_type(value: str | None, field: str = "event_type") -> str:
    """Validate an event type such as ``order.shipped``."""
    event_type = _blank_to_none(value)
    if event_type is None:
        raise InvalidInputError("is required, for example order.shipped", field=field)
    check_length(event_type, field, column_length(Template.event_type))
    if not _EVENT_TYPE.match(event_type):
        raise InvalidInputError(
            f"{event_type[:80]!r} is not a valid event type; use letters, digits "
            "and . _ : / -, for example order.shipped",
            field=field,
        )
    return event_type


def normalize_locale(value: str | None, field: str = "locale") -> str | None:
    """Return a locale tag in lower case with hyphens, or None when blank."""
    locale = _blank_to_none(value)
    if locale is None:
        return None
    locale = locale.replace("_", "-")
    if len(locale) > 35 or not _LOCALE.match(locale):
        raise InvalidInputError(
            f"{locale[:40]!r} is not a language tag; use for example de or de-CH",
            field=field,
        )
    return locale.lower()


def _check_recipients(entries: list[Any], field: str) -> list[Any]:
    checked: list[Any] = []
    for index, entry in enumerate(entries):
        label = f"{field}[{index}]"
        if isinstance(entry, str):
            address = _single_line(entry.strip(), label)
            if not address:
                raise InvalidInputError("must not be empty", field=label)
            if not is_template(address):
                address = str(parse_mailbox(address, label))
            checked.append(address)
            continue
        entry = RecipientEntry.model_validate(entry)
        address = _single_line(entry.address.strip(), f"{label}.address")
        if not address:
            raise InvalidInputError("must not be empty", field=f"{label}.address")
        if not is_template(address):
            mailbox = parse_mailbox(address, f"{label}.address")
            if mailbox.display_name:
                raise InvalidInputError(
                    "must be a bare address; put the display name in name",
                    field=f"{label}.address",
                )
        value: dict[str, str] = {"address": address}
        name = _blank_to_none(entry.name)
        if name is not None:
            value["name"] = _single_line(name, f"{label}.name")
        checked.append(value)
    return checked


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        field = f"headers.{name}"
        check_single_line(name, field)
        if not name or not all("!" <= char <= "~" and char != ":" for char in name):
            raise InvalidInputError(
                "is not a valid header name; use printable ASCII without ':'",
                field=field,
            )
        if name.lower() in RESERVED_HEADERS:
            raise InvalidInputError(
                "is set by Postroom; use the matching template field instead",
                field=field,
            )
        if name.lower() in _UNSUBSCRIBE_HEADERS:
            raise InvalidInputError(
                "is set by list_unsubscribe and list_unsubscribe_post; use those",
                field=field,
            )
        _single_line(value, field)
    return headers


def _check_attachments(specs: list[Any]) -> list[dict[str, Any]]:
    checked = []
    for index, raw in enumerate(specs):
        label = f"attachments[{index}]"
        spec = AttachmentSpec.model_validate(raw)
        source = _single_line(spec.source.strip(), f"{label}.source")
        if not source:
            raise InvalidInputError(
                "is required: an expression such as order.invoice",
                field=f"{label}.source",
            )
        if spec.content_type is not None:
            try:
                split_content_type(spec.content_type, f"{label}.content_type")
            except ValueError as exc:
                raise InvalidInputError(
                    str(exc), field=f"{label}.content_type"
                ) from exc
        for name in ("filename", "content_id"):
            value = getattr(spec, name)
            if value is not None:
                _single_line(value, f"{label}.{name}")
        value = spec.model_dump(exclude_defaults=True)
        value["source"] = source
        checked.append(value)
    return checked


def _check_unsubscribe(uris: list[str], post: bool) -> list[str]:
    checked = []
    for index, uri in enumerate(uris):
        label = f"list_unsubscribe[{index}]"
        uri = _single_line(uri.strip(), label)
        if not uri:
            raise InvalidInputError("must not be empty", field=label)
        if not is_template(uri):
            uri = check_unsubscribe_uri(uri, label)
        checked.append(uri)
    if post and not checked:
        raise InvalidInputError(
            "needs at least one https URI in list_unsubscribe",
            field="list_unsubscribe_post",
        )
    return checked


def normalize(state: dict[str, Any]) -> dict[str, Any]:
    """Check a template's complete state and return it cleaned up.

    Only what can be checked without rendering is checked here; compiling
    the Jinja parts happens in a render process (see store.save).
    """
    state = dict(state)
    state["name"] = _check_name(state["name"])
    state["event_type"] = check_event_type(state["event_type"])
    client = _blank_to_none(state["client"])
    state["client"] = _single_line(client, "client") if client else None
    if state["client"]:
        check_length(state["client"], "client", column_length(Template.client))
    state["locale"] = normalize_locale(state["locale"])

    subject = _blank_to_none(state["subject"])
    if subject is None:
        raise InvalidInputError("is required", field="subject")
    state["subject"] = _single_line(subject, "subject")
    for name in ("html_body", "text_body"):
        body = state[name]
        state[name] = _check_source(body, name) if body and body.strip() else None
    if state["html_body"] is None and state["text_body"] is None:
        raise InvalidInputError(
            "a template needs an HTML body, a text body or both", field="html_body"
        )

    from_address = _blank_to_none(state["from_address"])
    state["from_address"] = (
        str(parse_mailbox(from_address, "from_address")) if from_address else None
    )
    if state["from_address"]:
        # The rendered form is what is stored, so it is what must fit.
        limit = column_length(Template.from_address)
        check_length(state["from_address"], "from_address", limit)
    for name in ("to", "cc", "bcc", "reply_to"):
        state[name] = _check_recipients(list(state[name]), name)
    if not (state["to"] or state["cc"] or state["bcc"]):
        raise InvalidInputError(
            "at least one recipient is required in to, cc or bcc, for example "
            "'{{ customer.email }}'",
            field="to",
        )
    state["headers"] = _check_headers(dict(state["headers"]))
    state["attachments"] = _check_attachments(list(state["attachments"]))
    state["list_unsubscribe"] = _check_unsubscribe(
        list(state["list_unsubscribe"]), bool(state["list_unsubscribe_post"])
    )
    profile = _blank_to_none(state["profile_name"])
    state["profile_name"] = _single_line(profile, "profile") if profile else None
    if state["profile_name"]:
        limit = column_length(Template.profile_name)
        check_length(state["profile_name"], "profile", limit)

    sample = state["sample_data"]
    if sample is not None and len(json.dumps(sample)) > MAX_SAMPLE_DATA_BYTES:
        raise InvalidInputError(
            f"must be at most {MAX_SAMPLE_DATA_BYTES} bytes of JSON",
            field="sample_data",
        )
    return state
