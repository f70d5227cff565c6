"""Build a message into its final bytes, with its envelope.

Messages are built once, when they are queued, and stored as bytes: the
worker sends exactly what was built, and support can later see exactly what
went out.
"""

from __future__ import annotations

import email.policy
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import quote, urlsplit

from email_validator import EmailNotValidError, validate_email

from postroom.clock import utcnow
from postroom.domain.models import RecipientKind
from postroom.domain.validation import Mailbox, check_single_line, parse_mailbox
from postroom.errors import InvalidInputError
from postroom.mime.headers import (
    check_encodable,
    clean_display_name,
    fold_tokens,
    format_address,
    format_address_list,
    format_unstructured,
)
from postroom.mime.parts import (
    Attachment,
    body_tree,
    is_valid_content_id,
    split_content_type,
)

__all__ = [
    "RESERVED_HEADERS",
    "Attachment",
    "BuiltMessage",
    "MessageDraft",
    "build_message",
    "envelope_address",
    "new_message_id",
]

# RFC 5322, 2.1.1: no line may be longer than 998 octets without its CRLF.
MAX_LINE_OCTETS = 998
# List-Unsubscribe URIs: RFC 2369 allows mailto, http and https; RFC 8058
# one-click unsubscription needs an https one.
_UNSUBSCRIBE_SCHEMES = ("https", "http", "mailto")
_MAX_URI_LENGTH = 900

# Headers a caller may not set through ``headers`` because the builder owns
# them, or because they would change the envelope or the structure.
RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Subject",
        "Date",
        "Message-ID",
        "Reply-To",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Return-Path",
        "Sender",
    )
)


@dataclass(frozen=True)
class BuiltMessage:
    raw: bytes
    message_id: str
    envelope_sender: str
    # (addr-spec, kind) for every envelope recipient, To first, then Cc, Bcc.
    recipients: list[tuple[str, RecipientKind]]
    subject: str
    smtputf8: bool


@dataclass
class MessageDraft:
    """A message before it is built. Addresses are strings such as
    ``Name <local@domain>``, or Mailbox values when the display name comes
    from data and must not be parsed again."""

    sender: str | Mailbox
    to: Sequence[str | Mailbox] = ()
    cc: Sequence[str | Mailbox] = ()
    bcc: Sequence[str | Mailbox] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    reply_to: Sequence[str | Mailbox] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    attachments: Sequence[Attachment] = ()
    # URIs for List-Unsubscribe (RFC 2369); with ``list_unsubscribe_post``
    # the message also offers one-click unsubscription (RFC 8058).
    list_unsubscribe: Sequence[str] = ()
    list_unsubscribe_post: bool = False


def envelope_address(mailbox: Mailbox) -> str:
    """Return the addr-spec for MAIL FROM or RCPT TO, domain in ASCII (IDNA)."""
    try:
        result = validate_email(
            mailbox.addr_spec,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_domain_literal=True,
        )
    except EmailNotValidError:
        return mailbox.addr_spec
    return result.ascii_email or f"{result.local_part}@{result.ascii_domain}"


def _header_tokens(mailbox: Mailbox) -> list[str]:
    # Headers carry the ASCII (IDNA) form of the domain; a non-ASCII local
    # part stays as it is and makes the message need SMTPUTF8.
    local, _, domain = envelope_address(mailbox).rpartition("@")
    return format_address(mailbox.display_name, local, domain)


def new_message_id(domain: str) -> str:
    """Return a globally unique Message-ID (RFC 5322, 3.6.4) on ``domain``."""
    unique = f"{int(time.time() * 1000):x}.{secrets.token_hex(10)}"
    return f"<{unique}@{domain}>"


def _to_mailbox(value: str | Mailbox, field_name: str) -> Mailbox:
    if isinstance(value, str):
        return parse_mailbox(value, field_name)
    check_single_line(value.display_name, field_name)
    check_encodable(value.display_name, field_name)
    parsed = parse_mailbox(value.addr_spec, field_name)
    # Mail readers collapse spaces in display names; doing it here keeps what
    # is stored and shown equal to what recipients see.
    display_name = clean_display_name(value.display_name)
    return Mailbox(display_name=display_name, addr_spec=parsed.addr_spec)


def _parse_list(values: Sequence[str | Mailbox], field_name: str) -> list[Mailbox]:
    return [
        _to_mailbox(value, f"{field_name}[{index}]")
        for index, value in enumerate(values)
    ]


def _check_headers(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        field_name = f"headers.{name}"
        check_single_line(name, field_name)
        check_single_line(value, field_name)
        check_encodable(value, field_name)
        # RFC 5322, 3.6.8: a field name is printable ASCII except the colon.
        if not name or not all("!" <= char <= "~" and char != ":" for char in name):
            raise InvalidInputError("is not a valid header name", field=field_name)
        if name.lower() in RESERVED_HEADERS:
            raise InvalidInputError(
                "is set by Postroom and cannot be overridden; use the matching "
                "field of the message instead",
                field=field_name,
            )


def check_unsubscribe_uri(uri: str, field_name: str) -> str:
    """Validate a List-Unsubscribe URI; percent-encode spaces and non-ASCII."""
    check_single_line(uri, field_name)
    check_encodable(uri, field_name)
    uri = quote(uri.strip(), safe="".join(chr(code) for code in range(0x21, 0x7F)))
    scheme = urlsplit(uri).scheme.lower()
    if scheme not in _UNSUBSCRIBE_SCHEMES:
        raise InvalidInputError(
            f"{uri[:80]!r} is not an https, http or mailto URI",
            field=field_name,
        )
    if any(char in uri for char in '<>" '):
        raise InvalidInputError(
            "must not contain quotes or angle brackets; percent-encode them",
            field=field_name,
        )
    if len(uri) > _MAX_URI_LENGTH:
        raise InvalidInputError(
            f"is {len(uri)} characters long; at most {_MAX_URI_LENGTH} fit in a header",
            field=field_name,
        )
    return uri


def _check_unsubscribe(draft: MessageDraft) -> list[str]:
    uris = [
        check_unsubscribe_uri(uri, f"list_unsubscribe[{index}]")
        for index, uri in enumerate(draft.list_unsubscribe)
    ]
    if draft.list_unsubscribe_post and not any(
        uri.lower().startswith("https:") for uri in uris
    ):
        raise InvalidInputError(
            "one-click unsubscription (RFC 8058) needs an https URI in "
            "list_unsubscribe",
            field="list_unsubscribe_post",
        )
    if uris and any(name.lower() == "list-unsubscribe" for name in draft.headers):
        raise InvalidInputError(
            "is also given as list_unsubscribe; set it in one place only",
            field="headers.List-Unsubscribe",
        )
    return uris


def _check_attachments(attachments: Sequence[Attachment]) -> None:
    for index, attachment in enumerate(attachments):
        prefix = f"attachments[{index}]"
        if not attachment.filename.strip():
            raise InvalidInputError("is required", field=f"{prefix}.filename")
        check_single_line(attachment.filename, f"{prefix}.filename")
        check_encodable(attachment.filename, f"{prefix}.filename")
        try:
            split_content_type(attachment.content_type, f"{prefix}.content_type")
        except ValueError as exc:
            raise InvalidInputError(str(exc), field=f"{prefix}.content_type") from exc
        if attachment.content_id is not None and not is_valid_content_id(
            attachment.content_id
        ):
            raise InvalidInputError(
                f"{attachment.content_id!r} is not a valid Content-ID; use letters, "
                "digits and . - _ @ only, for example logo@example.com",
                field=f"{prefix}.content_id",
            )


def _check_line_lengths(raw: bytes) -> None:
    for line in raw.split(b"\r\n"):
        if len(line) > MAX_LINE_OCTETS:
            name = line.split(b":", 1)[0][:40].decode("ascii", "replace")
            raise InvalidInputError(
                f"a line of the built message is {len(line)} octets long, more than "
                f"the {MAX_LINE_OCTETS} SMTP allows (near {name!r}); shorten that value",
                field="headers",
            )


def build_message(draft: MessageDraft) -> BuiltMessage:
    """Validate a draft and render it; raise InvalidInputError naming the field."""
    sender = _to_mailbox(draft.sender, "from")
    to = _parse_list(draft.to, "to")
    cc = _parse_list(draft.cc, "cc")
    bcc = _parse_list(draft.bcc, "bcc")
    reply_to = _parse_list(draft.reply_to, "reply_to")
    if not (to or cc or bcc):
        raise InvalidInputError("at least one recipient is required", field="to")
    check_single_line(draft.subject, "subject")
    check_encodable(draft.subject, "subject")
    if not draft.text and not draft.html:
        raise InvalidInputError("a text or an HTML body is required", field="text")
    for name in ("text", "html"):
        check_encodable(getattr(draft, name) or "", name)
    _check_headers(draft.headers)
    unsubscribe = _check_unsubscribe(draft)
    _check_attachments(draft.attachments)

    mailboxes = [sender, *to, *cc, *bcc, *reply_to]
    smtputf8 = any(mailbox.needs_smtputf8 for mailbox in mailboxes)
    # Bodies are always 7-bit safe (quoted-printable or base64), so no server
    # needs 8BITMIME; only SMTPUTF8 headers, when an address needs them, are not.
    # Header values are encoded by postroom.mime.headers and must be written
    # as they are, hence refold_source="none".
    policy = (email.policy.SMTPUTF8 if smtputf8 else email.policy.SMTP).clone(
        cte_type="7bit", refold_source="none"
    )

    message = EmailMessage(policy=policy)
    envelope_sender = envelope_address(sender)
    domain = envelope_sender.rpartition("@")[2].strip("[]") or "postroom.invalid"
    message_id = new_message_id(domain)

    message.set_raw("From", format_address_list("From", [_header_tokens(sender)]))
    for name, group in (("To", to), ("Cc", cc), ("Reply-To", reply_to)):
        if group:
            value = format_address_list(name, [_header_tokens(box) for box in group])
            message.set_raw(name, value)
    message.set_raw("Subject", format_unstructured("Subject", draft.subject))
    message.set_raw("Date", format_datetime(utcnow()))
    message.set_raw("Message-ID", message_id)
    if unsubscribe:
        tokens = [f"<{uri}>," for uri in unsubscribe]
        tokens[-1] = tokens[-1].rstrip(",")
        message.set_raw("List-Unsubscribe", fold_tokens(tokens, 60))
        if draft.list_unsubscribe_post:
            message.set_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    for name, value in draft.headers.items():
        message.set_raw(name, format_unstructured(name, value))

    body = body_tree(draft.text or None, draft.html or None, draft.attachments, policy)
    message.set_raw("MIME-Version", "1.0")
    for name, value in body.raw_items():
        message.set_raw(name, value)
    message.set_payload(body.get_payload())

    recipients: list[tuple[str, RecipientKind]] = []
    seen: set[str] = set()
    for kind, group in (
        (RecipientKind.TO, to),
        (RecipientKind.CC, cc),
        (RecipientKind.BCC, bcc),
    ):
        for mailbox in group:
            address = envelope_address(mailbox)
            if address.lower() not in seen:
                seen.add(address.lower())
                recipients.append((address, kind))

    raw = message.as_bytes(policy=policy)
    _check_line_lengths(raw)
    return BuiltMessage(
        raw=raw,
        message_id=message_id,
        envelope_sender=envelope_sender,
        recipients=recipients,
        subject=draft.subject,
        smtputf8=smtputf8,
    )
