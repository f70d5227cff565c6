"""Message building: MIME structure, header encodings, limits and injection."""

from __future__ import annotations

import email
import email.policy
import re
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from postroom.domain.validation import Mailbox
from postroom.errors import InvalidInputError
from postroom.mime.build import Attachment, MessageDraft, build_message
from postroom.mime.headers import clean_display_name
from postroom.mime.parts import normalize_newlines


def build(**changes: Any) -> bytes:
    values: dict[str, Any] = {
        "sender": "Orders <orders@example.com>",
        "to": ["bob@example.com"],
        "subject": "Order 42 shipped",
        "text": "Your parcel is on its way.",
    }
    values.update(changes)
    return build_message(MessageDraft(**values)).raw


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


ENCODED_WORD = re.compile(r"=\?utf-8\?[bq]\?[^?]*\?=")


def display_name(message: EmailMessage, header: str, address: str) -> str:
    """Decode the display name in front of ``address`` in an address header.

    Python 3.11's address parser adds a space between adjacent encoded
    words in a display name (CPython gh-128110, fixed in later versions),
    while RFC 2047, 6.2 says the space between them is ignored. It also
    changes whitespace inside an encoded word: "0 \\xa00" comes back as
    "0 0". A name made only of encoded words is therefore decoded with
    email.header, the standard library's RFC 2047 decoder.
    """
    raw = dict(message.raw_items())[header].replace("\r\n", "")
    phrase = raw.split(f"<{address}>")[0].strip()
    if not ENCODED_WORD.search(phrase) or ENCODED_WORD.sub("", phrase).strip():
        return str(message[header].addresses[0].display_name)
    return str(make_header(decode_header(phrase)))


def structure(message: EmailMessage) -> list[str]:
    return [part.get_content_type() for part in message.walk()]


def test_text_only_is_single_part() -> None:
    message = parse(build())

    assert structure(message) == ["text/plain"]
    assert message.get_content() == "Your parcel is on its way.\r\n"


def test_html_only_stays_single_part() -> None:
    message = parse(build(text=None, html="<p>Shipped</p>"))

    assert structure(message) == ["text/html"]


def test_text_and_html_are_alternatives() -> None:
    message = parse(build(html="<p>Shipped</p>"))

    assert structure(message) == ["multipart/alternative", "text/plain", "text/html"]


def test_inline_image_is_related_to_html() -> None:
    logo = Attachment("logo.png", b"\x89PNG\r\n", "image/png", content_id="logo@shop")
    invoice = Attachment("invoice.pdf", b"%PDF-1.7", "application/pdf")

    message = parse(
        build(html='<img src="cid:logo@shop">', attachments=[logo, invoice])
    )

    assert structure(message) == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
        "application/pdf",
    ]
    image = next(
        part for part in message.walk() if part.get_content_type() == "image/png"
    )
    assert image["Content-ID"] == "<logo@shop>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == b"\x89PNG\r\n"
    attachments = list(message.iter_attachments())
    assert [part.get_filename() for part in attachments] == ["invoice.pdf"]


def test_inline_image_without_html_is_attachment() -> None:
    logo = Attachment("logo.png", b"PNG", "image/png", content_id="logo@shop")

    message = parse(build(attachments=[logo]))

    assert structure(message) == ["multipart/mixed", "text/plain", "image/png"]
    assert next(iter(message.iter_attachments())).get_content_disposition() == (
        "attachment"
    )


def test_non_ascii_file_name_uses_rfc_2231() -> None:
    name = "Rechnung für Müller, März 2026 " + "ü" * 40 + ".pdf"

    raw = build(attachments=[Attachment(name, b"%PDF", "application/pdf")])

    assert b"filename*0*=utf-8''Rechnung%20f%C3%BCr" in raw
    assert next(iter(parse(raw).iter_attachments())).get_filename() == name


def test_non_ascii_subject_and_name_use_rfc_2047() -> None:
    raw = build(
        subject="Ihre Bestellung: Grüße aus Köln",
        to=[Mailbox("Jürgen Müller", "juergen@example.com")],
    )
    headers = header_block(raw)
    message = parse(raw)

    assert headers.isascii()
    assert b"=?utf-8?" in headers
    assert message["Subject"] == "Ihre Bestellung: Grüße aus Köln"
    assert message["To"].addresses[0].display_name == "Jürgen Müller"


def test_encoded_word_lookalike_survives() -> None:
    subject = "=?utf-8?q?not_an_encoded_word?="
    name = 'Eve "=?utf-8?q?Admin?="'

    message = parse(build(subject=subject, to=[Mailbox(name, "eve@example.com")]))

    assert message["Subject"] == subject
    assert message["To"].addresses[0].display_name == name


def test_lines_stay_within_limits() -> None:
    raw = build(
        subject="x" * 2000,
        text="y" * 5000 + "\n" + "ü" * 3000,
        html="<p>" + "z" * 5000 + "</p>",
        headers={"X-Long": "w" * 1500},
        attachments=[Attachment("a" * 400 + ".txt", b"0" * 5000, "text/plain")],
    )
    message = parse(raw)

    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert message["Subject"] == "x" * 2000
    assert message["X-Long"] == "w" * 1500


def test_date_and_message_id_present() -> None:
    built = build_message(
        MessageDraft(sender="orders@example.com", to=["bob@example.com"], text="x")
    )
    message = parse(built.raw)

    assert message["Message-ID"] == built.message_id
    assert built.message_id.endswith("@example.com>")
    assert message["Date"].datetime is not None
    assert message["MIME-Version"] == "1.0"


def test_list_unsubscribe_with_one_click() -> None:
    message = parse(
        build(
            list_unsubscribe=[
                "https://shop.example/unsubscribe?u=42&ü=1 2",
                "mailto:unsubscribe@shop.example?subject=stop",
            ],
            list_unsubscribe_post=True,
        )
    )

    assert message["List-Unsubscribe"] == (
        "<https://shop.example/unsubscribe?u=42&%C3%BC=1%202>, "
        "<mailto:unsubscribe@shop.example?subject=stop>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_one_click_needs_https_uri() -> None:
    with pytest.raises(InvalidInputError) as caught:
        build(list_unsubscribe=["mailto:u@shop.example"], list_unsubscribe_post=True)

    assert caught.value.field == "list_unsubscribe_post"


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        'https://x.example/"a"',
        "<https://x.example/>",
        "https://x\r\nBcc: a@b",
    ],
)
def test_bad_unsubscribe_uri_rejected(uri: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        build(list_unsubscribe=[uri])

    assert caught.value.field == "list_unsubscribe[0]"


def test_no_list_unsubscribe_unless_asked() -> None:
    assert "List-Unsubscribe" not in parse(build())


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"subject": "Hi\r\nBcc: eve@example.com"}, "subject"),
        ({"subject": "Hi\nBcc: eve@example.com"}, "subject"),
        ({"headers": {"X-Order": "1\r\nBcc: eve@example.com"}}, "headers.X-Order"),
        ({"headers": {"X-Order\r\nBcc": "eve@example.com"}}, "headers.X-Order\r\nBcc"),
        ({"headers": {"Bcc": "eve@example.com"}}, "headers.Bcc"),
        ({"to": [Mailbox("Bob\r\nBcc: eve@example.com", "bob@example.com")]}, "to[0]"),
        ({"to": [Mailbox("Bob", "bob@example.com\r\nBcc: eve@x.example")]}, "to[0]"),
        ({"to": ["bob@example.com\nBcc: eve@example.com"]}, "to[0]"),
        ({"sender": "Orders\r\n <orders@example.com>"}, "from"),
        (
            {"attachments": [Attachment("a\r\nX-Evil: 1.txt", b"x", "text/plain")]},
            "attachments[0].filename",
        ),
        (
            {"attachments": [Attachment("a.txt", b"x", "text/plain\r\nX-Evil: 1")]},
            "attachments[0].content_type",
        ),
        (
            {"attachments": [Attachment("a.png", b"x", "image/png", "a>\r\nX: 1")]},
            "attachments[0].content_id",
        ),
        ({"subject": "lone \ud800 surrogate"}, "subject"),
        ({"text": "lone \udfff surrogate"}, "text"),
    ],
)
def test_header_injection_rejected(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        build(**changes)

    assert caught.value.field == field


def test_smuggling_sequences_stay_in_body() -> None:
    body = "Hello\n.\r\nMAIL FROM:<eve@example.com>\r\n\r.\r\nend\n.\nlast"

    raw = build(text=body)

    assert b"\n.\r\n" not in raw
    assert b"\r\n.\r\n" not in raw
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert parse(raw).get_content().replace("\r\n", "\n") == normalize_newlines(body)


def test_international_local_part_needs_smtputf8() -> None:
    built = build_message(
        MessageDraft(
            sender="orders@example.com", to=["jürgen@bücher.example"], text="x"
        )
    )

    assert built.smtputf8 is True
    assert built.recipients[0][0] == "jürgen@xn--bcher-kva.example"
    assert "jürgen@xn--bcher-kva.example".encode() in built.raw


def test_international_domain_alone_stays_ascii() -> None:
    built = build_message(
        MessageDraft(sender="orders@example.com", to=["bob@bücher.example"], text="x")
    )

    assert built.smtputf8 is False
    assert built.raw.isascii()
    assert built.recipients[0][0] == "bob@xn--bcher-kva.example"


# Text that build_message accepts in a header: no C0 control characters,
# DEL or line separators (NEL, U+2028, U+2029), which are rejected (see
# test_header_injection_rejected), and no lone surrogates (not encodable as
# UTF-8).
header_text = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters=[chr(c) for c in [*range(32), 127, 0x85, 0x2028, 0x2029]],
    ),
    max_size=120,
)
body_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=400)
file_names = header_text.filter(lambda name: name.strip() != "")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=header_text,
    name=header_text,
    text=body_text,
    html=body_text,
    file_name=file_names,
    content=st.binary(max_size=300),
)
# A space followed by a no-break space, which Python 3.11's address parser
# turns into one space.
@example(subject="", name="0 \xa00", text="", html="", file_name="0", content=b"")
def test_round_trip_through_stdlib_parser(
    subject: str, name: str, text: str, html: str, file_name: str, content: bytes
) -> None:
    built = build_message(
        MessageDraft(
            sender=Mailbox(name, "orders@example.com"),
            to=[Mailbox(name, "bob@example.com"), "carol@example.com"],
            subject=subject,
            text=text or "-",
            html=html or "-",
            headers={"X-Note": subject},
            attachments=[Attachment(file_name, content, "application/octet-stream")],
        )
    )
    message = parse(built.raw)

    assert max(len(line) for line in built.raw.split(b"\r\n")) <= 998
    assert built.raw.isascii()
    assert message.defects == []
    assert message["Subject"] == subject
    assert message["X-Note"] == subject
    expected_name = clean_display_name(name)
    assert display_name(message, "From", "orders@example.com") == expected_name
    assert display_name(message, "To", "bob@example.com") == expected_name
    to = message["To"].addresses
    assert [address.addr_spec for address in to] == [
        "bob@example.com",
        "carol@example.com",
    ]
    plain = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert plain is not None
    assert html_part is not None
    assert plain.get_content().replace("\r\n", "\n") == normalize_newlines(text or "-")
    assert html_part.get_content().replace("\r\n", "\n") == normalize_newlines(
        html or "-"
    )
    attachment = next(message.iter_attachments())
    assert attachment.get_filename() == file_name.strip()
    assert attachment.get_content() == content
