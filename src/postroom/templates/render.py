"""Render a template with event data into a built message.

Jinja2 runs only in render processes (postroom.templates.isolation); this
module prepares the job, turns the rendered strings into a MessageDraft
and builds it. Every value that reaches a header is folded onto one line
first (postroom.mime.headers.clean_header_text), and addresses are parsed
and validated, so a CR or LF in event data can neither start a header nor
end the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import errors as email_errors
from email.headerregistry import HeaderRegistry
from typing import Any

from postroom.config import Settings
from postroom.domain.notifications import Template
from postroom.domain.validation import Mailbox, check_address
from postroom.errors import InvalidInputError
from postroom.mime.build import BuiltMessage, MessageDraft, build_message
from postroom.mime.headers import clean_display_name, clean_header_text
from postroom.templates.attachments import attachments_from, check_total_size
from postroom.templates.isolation import (
    RenderCrashed,
    RenderMemoryExceeded,
    RenderPool,
    RenderTimeout,
    shared_pool,
)
from postroom.templates.spec import template_parts

_HEADERS = HeaderRegistry()


@dataclass(frozen=True)
class RenderLimits:
    timeout_seconds: float = 2.0
    max_output_chars: int = 1_000_000
    processes: int = 2
    memory_mb: int = 512

    @classmethod
    def from_settings(cls, settings: Settings) -> RenderLimits:
        return cls(
            timeout_seconds=settings.render_timeout_seconds,
            max_output_chars=settings.render_max_output_chars,
            processes=settings.render_processes,
            memory_mb=settings.render_memory_mb,
        )

    def pool(self) -> RenderPool:
        return shared_pool(self.processes, self.memory_mb)


class TemplateRenderError(InvalidInputError):
    """A template that failed to compile or render, with the part and line."""

    def __init__(
        self,
        reason: str,
        *,
        template: str | None,
        part: str | None,
        line: int | None = None,
    ) -> None:
        where = part or "template"
        if line is not None:
            where += f" line {line}"
        prefix = f"template {template!r}: " if template else ""
        super().__init__(f"{prefix}{where}: {reason}", field=part)
        self.template = template
        self.part = part
        self.line = line
        self.reason = reason


def run_job(
    limits: RenderLimits, operation: str, job: dict[str, Any], template: str | None
) -> dict[str, Any]:
    """Run a job in a render process; map a stopped process to an error."""
    job = {**job, "max_output": limits.max_output_chars}
    try:
        result: dict[str, Any] = limits.pool().run(
            operation, job, limits.timeout_seconds
        )
    except RenderTimeout:
        raise TemplateRenderError(
            f"rendering took longer than {limits.timeout_seconds:g} seconds and "
            "was stopped; look for a loop over a large range or a large part of "
            "the data",
            template=template,
            part=None,
        ) from None
    except RenderMemoryExceeded:
        raise TemplateRenderError(
            f"rendering needed more than {limits.memory_mb} MiB of memory and was "
            "stopped; look for a value built up in a loop",
            template=template,
            part=None,
        ) from None
    except RenderCrashed as exc:
        raise TemplateRenderError(
            f"the render process failed ({exc})", template=template, part=None
        ) from None
    return result


def check_template(state: dict[str, Any], limits: RenderLimits) -> list[str]:
    """Compile every part; return the event data paths the template reads."""
    result = run_job(limits, "check", {"parts": template_parts(state)}, template=None)
    if result["errors"]:
        error = result["errors"][0]
        raise TemplateRenderError(
            error["reason"], template=None, part=error["part"], line=error["line"]
        )
    variables: list[str] = result["variables"]
    return variables


def event_context(
    data: dict[str, Any],
    *,
    event_type: str,
    client: str | None,
    locale: str | None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Return the template variables: the data's keys, and ``event``."""
    event = {
        "type": event_type,
        "client": client,
        "locale": locale,
        "idempotency_key": idempotency_key,
        "data": data,
    }
    return {**data, "event": event}


def _mailboxes(value: str, field: str) -> list[Mailbox]:
    """Parse a rendered recipient entry: none, one or several addresses."""
    value = clean_header_text(value)
    if not value:
        return []
    try:
        header = _HEADERS("To", value)
    except (IndexError, ValueError) as exc:
        raise InvalidInputError(
            f"{value[:200]!r} is not a valid address list", field=field
        ) from exc
    defects = [
        defect
        for defect in header.defects
        if not isinstance(defect, email_errors.NonASCIILocalPartDefect)
    ]
    addresses = getattr(header, "addresses", ())
    if defects or not addresses or any(not item.domain for item in addresses):
        raise InvalidInputError(
            f"{value[:200]!r} is not a valid address or list of addresses",
            field=field,
        )
    return [
        Mailbox(
            display_name=clean_display_name(item.display_name),
            addr_spec=check_address(item.addr_spec, field),
        )
        for item in addresses
    ]


def _recipients(
    entries: list[Any], field: str, values: dict[str, Any]
) -> list[Mailbox]:
    mailboxes: list[Mailbox] = []
    for index, entry in enumerate(entries):
        label = f"{field}[{index}]"
        if isinstance(entry, str):
            mailboxes.extend(_mailboxes(values[label], label))
            continue
        address = clean_header_text(values[f"{label}.address"])
        if not address:
            continue
        addr_spec = check_address(address, f"{label}.address")
        name = clean_display_name(values.get(f"{label}.name", ""))
        mailboxes.append(Mailbox(display_name=name, addr_spec=addr_spec))
    return mailboxes


def _render_values(
    template: Template, context: dict[str, Any], limits: RenderLimits
) -> dict[str, Any]:
    job: dict[str, Any] = {"parts": template_parts(template), "context": context}
    if template.html_body:
        job["text_from_html"] = "html_body"
    result = run_job(limits, "render", job, template=template.name)
    if result["error"]:
        error = result["error"]
        raise TemplateRenderError(
            error["reason"],
            template=template.name,
            part=error["part"],
            line=error["line"],
        )
    values: dict[str, Any] = result["values"]
    return values


def render_draft(
    template: Template,
    context: dict[str, Any],
    sender: str,
    limits: RenderLimits,
) -> MessageDraft:
    """Render a template into a draft; raise TemplateRenderError on any failure."""
    values = _render_values(template, context, limits)

    text = values.get("text_body") or ""
    html = values.get("html_body") or ""
    if not text.strip() and html.strip():
        text = values.get("text_from_html") or ""
    if not text.strip() and not html.strip():
        raise TemplateRenderError(
            "both bodies rendered empty", template=template.name, part="html_body"
        )

    try:
        files = []
        for index, spec in enumerate(template.attachments):
            label = f"attachments[{index}]"
            rendered = {
                name: values[f"{label}.{name}"]
                for name in ("filename", "content_id")
                if f"{label}.{name}" in values
            }
            files.extend(
                attachments_from(spec, values[f"{label}.source"], rendered, label)
            )
        check_total_size(files)
        draft = MessageDraft(
            sender=sender,
            to=_recipients(template.to, "to", values),
            cc=_recipients(template.cc, "cc", values),
            bcc=_recipients(template.bcc, "bcc", values),
            reply_to=_recipients(template.reply_to, "reply_to", values),
            subject=clean_header_text(values["subject"]),
            text=text if text.strip() else None,
            html=html if html.strip() else None,
            headers={
                name: clean_header_text(values[f"headers.{name}"])
                for name in template.headers
            },
            attachments=files,
            list_unsubscribe=[
                uri
                for index in range(len(template.list_unsubscribe))
                if (uri := clean_header_text(values[f"list_unsubscribe[{index}]"]))
            ],
            list_unsubscribe_post=template.list_unsubscribe_post,
        )
    except TemplateRenderError:
        raise
    except InvalidInputError as exc:
        raise TemplateRenderError(
            exc.message, template=template.name, part=exc.field
        ) from exc
    return draft


def render_message(
    template: Template,
    context: dict[str, Any],
    sender: str,
    limits: RenderLimits,
) -> BuiltMessage:
    """Render and build; errors name the template and the part at fault."""
    draft = render_draft(template, context, sender, limits)
    try:
        return build_message(draft)
    except InvalidInputError as exc:
        raise TemplateRenderError(
            exc.message, template=template.name, part=exc.field
        ) from exc
