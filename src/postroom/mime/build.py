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
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from email_validator import EmailNotValidError, validate_email

from postroom.clock import utcnow
from postroom.domain.models import RecipientKind
from postroom.domain.validation import Mailbox, check_single_line, parse_mailbox
from postroom.errors import InvalidInputError

# Headers a caller may not set through ``headers`` because the builder owns
# them, or because they would change the envelope or the structure.
_RESERVED_HEADERS = frozenset(
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
class Attachment:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


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
    sender: str
    to: Sequence[str] = ()
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    reply_to: Sequence[str] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    attachments: Sequence[Attachment] = ()


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


def _header_address(mailbox: Mailbox) -> Address:
    # Headers carry the ASCII (IDNA) form of the domain; a non-ASCII local
    # part stays as it is and makes the message need SMTPUTF8.
    local, _, domain = envelope_address(mailbox).rpartition("@")
    return Address(display_name=mailbox.display_name, username=local, domain=domain)


def new_message_id(domain: str) -> str:
    """Return a globally unique Message-ID (RFC 5322, 3.6.4) on ``domain``."""
    unique = f"{int(time.time() * 1000):x}.{secrets.token_hex(10)}"
    return f"<{unique}@{domain}>"


def _parse_list(values: Sequence[str], field_name: str) -> list[Mailbox]:
    return [
        parse_mailbox(value, f"{field_name}[{index}]")
        for index, value in enumerate(values)
    ]


def _check_headers(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        field_name = f"headers.{name}"
        check_single_line(name, field_name)
        check_single_line(value, field_name)
        if not name or any(char in name for char in " :") or not name.isascii():
            raise InvalidInputError("is not a valid header name", field=field_name)
        if name.lower() in _RESERVED_HEADERS:
            raise InvalidInputError(
                "is set by Postroom and cannot be overridden; use the matching "
                "field of the message instead",
                field=field_name,
            )


def build_message(draft: MessageDraft) -> BuiltMessage:
    """Validate a draft and render it; raise InvalidInputError naming the field."""
    sender = parse_mailbox(draft.sender, "from")
    to = _parse_list(draft.to, "to")
    cc = _parse_list(draft.cc, "cc")
    bcc = _parse_list(draft.bcc, "bcc")
    reply_to = _parse_list(draft.reply_to, "reply_to")
    if not (to or cc or bcc):
        raise InvalidInputError("at least one recipient is required", field="to")
    check_single_line(draft.subject, "subject")
    if not draft.text and not draft.html:
        raise InvalidInputError("a text or an HTML body is required", field="text")
    _check_headers(draft.headers)

    mailboxes = [sender, *to, *cc, *bcc, *reply_to]
    smtputf8 = any(mailbox.needs_smtputf8 for mailbox in mailboxes)
    # Bodies are always 7-bit safe (quoted-printable or base64), so no server
    # needs 8BITMIME; only SMTPUTF8 headers, when an address needs them, are not.
    policy = (email.policy.SMTPUTF8 if smtputf8 else email.policy.SMTP).clone(
        cte_type="7bit"
    )

    message = EmailMessage(policy=policy)
    envelope_sender = envelope_address(sender)
    domain = envelope_sender.rpartition("@")[2].strip("[]") or "postroom.invalid"
    message_id = new_message_id(domain)

    message["From"] = _header_address(sender)
    if to:
        message["To"] = [_header_address(mailbox) for mailbox in to]
    if cc:
        message["Cc"] = [_header_address(mailbox) for mailbox in cc]
    if reply_to:
        message["Reply-To"] = [_header_address(mailbox) for mailbox in reply_to]
    message["Subject"] = draft.subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = message_id
    for name, value in draft.headers.items():
        message[name] = value

    if draft.text is not None and draft.text != "":
        message.set_content(draft.text)
        if draft.html:
            message.add_alternative(draft.html, subtype="html")
    elif draft.html:
        message.set_content(draft.html, subtype="html")
    for attachment in draft.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )

    for part in message.iter_parts():
        # The email package repeats MIME-Version on parts it converts to
        # alternatives; RFC 2045 wants it only at the top.
        del part["MIME-Version"]

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

    return BuiltMessage(
        raw=message.as_bytes(policy=policy),
        message_id=message_id,
        envelope_sender=envelope_sender,
        recipients=recipients,
        subject=draft.subject,
        smtputf8=smtputf8,
    )
