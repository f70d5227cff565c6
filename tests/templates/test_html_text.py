"""Plain text generated from an HTML body."""

from __future__ import annotations

from postroom.templates.html_text import html_to_text


def test_paragraphs_and_line_breaks() -> None:
    text = html_to_text(
        "<h1>Order   shipped</h1><p>Hello <b>Jürgen</b>,<br>on its way &amp; soon.</p>"
    )

    assert text == "Order shipped\n\nHello Jürgen,\non its way & soon.\n"


def test_lists_are_bulleted_and_numbered() -> None:
    text = html_to_text(
        "<ul><li>one</li><li>two</li></ul><ol><li>first</li><li>second"
        "<ul><li>nested</li></ul></li></ol>"
    )

    assert text == "- one\n- two\n\n1. first\n2. second\n  - nested\n"


def test_links_show_their_address() -> None:
    text = html_to_text(
        '<p><a href="https://shop.example/track/42">Track parcel</a> '
        '<a href="https://shop.example/">https://shop.example/</a> '
        '<a href="mailto:help@shop.example">help@shop.example</a> '
        '<a href="#top">top</a></p>'
    )

    assert text == (
        "Track parcel (https://shop.example/track/42) https://shop.example/ "
        "help@shop.example top\n"
    )


def test_hidden_content_dropped() -> None:
    text = html_to_text(
        "<html><head><title>T</title><style>p {color: red}</style></head>"
        "<body><script>alert(1)</script><p>Visible</p></body></html>"
    )

    assert text == "Visible\n"


def test_images_and_tables() -> None:
    text = html_to_text(
        '<img src="cid:logo" alt="Shop logo"><table><tr><td>Total</td><td>42 EUR</td>'
        "</tr><tr><td>VAT</td><td>8 EUR</td></tr></table>"
    )

    assert text == "[Shop logo]\nTotal 42 EUR\nVAT 8 EUR\n"


def test_preformatted_text_kept() -> None:
    assert html_to_text("<pre>  a  b\nc</pre>") == "  a  b\nc\n"
