"""MIME parts: text bodies, attachments, inline images and the multipart tree.

Bodies are always 7-bit safe, so no server needs 8BITMIME: text that is
plain ASCII with short lines goes as it is, anything else as
quoted-printable, and binary content as base64. Every line stays well within
the 998 octets RFC 5322 (2.1.1) allows.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import MIMEPart
from email.policy import Policy

from postroom.mime.headers import MAX_LINE, format_parameters

_LINE_BREAKS = re.compile(r"\r\n|\r")
# Characters that 7bit text may not contain as they are (RFC 2045, 2.7).
# NUL, a bare CR (already normalized away) and DEL are the dangerous ones.
# Other controls are encoded too, so no mail system has to guess about them.
_NOT_7BIT = re.compile(r"[^\n\t\x20-\x7e]")
_TOKEN = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,127}$")
_CONTENT_ID = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]{1,200}$")


@dataclass(frozen=True)
class Attachment:
    """A file sent with the message; with ``content_id`` it is an inline image
    that the HTML body shows with ``<img src="cid:CONTENT_ID">``."""

    filename: str
    content: bytes
    content_type: str = "application/octet-stream"
    content_id: str | None = None


def normalize_newlines(text: str) -> str:
    """Return text with every line break as LF and a final line break.

    SMTP carries CRLF only. A bare CR or LF is what SMTP smuggling relies
    on, so each becomes a real line break here before any encoding.
    """
    text = _LINE_BREAKS.sub("\n", text)
    if not text.endswith("\n"):
        text += "\n"
    return text


def text_part(text: str, subtype: str, policy: Policy) -> MIMEPart:
    """Build a text/plain or text/html part in UTF-8."""
    text = normalize_newlines(text)
    part = MIMEPart(policy=policy)
    lines = text.split("\n")
    # A line with a lone period ends DATA when a relay on the way does not
    # dot-stuff. Quoted-printable writes it as "=2E", so the stored message
    # never contains the end-of-data sequence.
    plain = all(len(line) <= MAX_LINE and line != "." for line in lines)
    if plain and not _NOT_7BIT.search(text):
        encoding = "7bit"
        payload = text
    else:
        # binascii rather than set_content: the email package splits text
        # with str.splitlines(), which also breaks lines at U+2028, form
        # feeds and other characters that are text, not line ends.
        encoding = "quoted-printable"
        payload = binascii.b2a_qp(text.encode("utf-8"), istext=True).decode("ascii")
    part.set_payload(payload)
    part.set_raw("Content-Type", f'text/{subtype}; charset="utf-8"')
    part.set_raw("Content-Transfer-Encoding", encoding)
    return part


def split_content_type(content_type: str, field: str) -> tuple[str, str]:
    """Split ``type/subtype``; raise ValueError with a message naming ``field``."""
    maintype, _, subtype = content_type.strip().lower().partition("/")
    if not (_TOKEN.match(maintype) and _TOKEN.match(subtype)):
        raise ValueError(
            f"{content_type!r} is not a MIME type; use type/subtype, for example "
            "application/pdf"
        )
    return maintype, subtype


def is_valid_content_id(content_id: str) -> bool:
    return bool(_CONTENT_ID.match(content_id))


def attachment_part(
    attachment: Attachment, policy: Policy, *, inline: bool = False
) -> MIMEPart:
    """Build a base64 part with its file name (RFC 2231 when needed)."""
    maintype, subtype = split_content_type(attachment.content_type, "content_type")
    part = MIMEPart(policy=policy)
    part.set_content(attachment.content, maintype, subtype)
    disposition = "inline" if inline else "attachment"
    # Mail readers and file systems drop spaces around a file name; trimming
    # here keeps the stored message equal to what the recipient sees.
    filename = attachment.filename.strip()
    part.set_raw(
        "Content-Disposition", format_parameters(disposition, [("filename", filename)])
    )
    if attachment.content_id:
        part.set_raw("Content-ID", f"<{attachment.content_id}>")
    return part


def multipart(subtype: str, parts: Sequence[MIMEPart], policy: Policy) -> MIMEPart:
    """Wrap parts in a multipart container; the generator picks the boundary."""
    container = MIMEPart(policy=policy)
    container.set_raw("Content-Type", f"multipart/{subtype}")
    for part in parts:
        container.attach(part)
    return container


def body_tree(
    text: str | None,
    html: str | None,
    attachments: Sequence[Attachment],
    policy: Policy,
) -> MIMEPart:
    """Arrange the parts the way mail readers expect.

    multipart/mixed contains the content and then the attachments. The
    content is multipart/alternative with the text part first and the HTML
    last, because RFC 2046 (5.1.4) puts the preferred part last. Inline
    images go in a multipart/related with the HTML part first (RFC 2387).
    """
    inline = [item for item in attachments if item.content_id and html]
    files = [item for item in attachments if item not in inline]

    html_block: MIMEPart | None = None
    if html:
        html_block = text_part(html, "html", policy)
        if inline:
            related = [attachment_part(item, policy, inline=True) for item in inline]
            html_block = multipart("related", [html_block, *related], policy)

    if text and html_block is not None:
        content = multipart(
            "alternative", [text_part(text, "plain", policy), html_block], policy
        )
    elif html_block is not None:
        content = html_block
    else:
        content = text_part(text or "", "plain", policy)

    if not files:
        return content
    return multipart(
        "mixed", [content, *(attachment_part(item, policy) for item in files)], policy
    )
