"""Readable plain text from an HTML body, for the text part of a message.

Built on the standard library's html.parser. The result is meant for people
reading mail in a text-only client and for spam filters that compare both
parts: paragraphs, line breaks, lists, links with their address and image
descriptions survive; layout, scripts and styles do not.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCKS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "center",
        "dd",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "main",
        "nav",
        "ol",
        "p",
        "section",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "ul",
    }
)
# Elements whose content is never shown to a reader.
_HIDDEN = frozenset({"head", "script", "style", "template", "title", "noscript"})
_SPACES = re.compile(r"[ \t\r\n\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")

# Markers for a line break and a space that survive whitespace collapsing.
_BREAK = "\x00"
_KEPT_SPACE = "\x01"


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden_depth = 0
        self._pre_depth = 0
        self._lists: list[list[int]] = []
        self._links: list[str | None] = []
        self._link_start: list[int] = []
        # Line breaks wanted before the next text: blocks ask for one or
        # two, and nested blocks must not add theirs up.
        self._pending_breaks = 0

    def _emit(self, text: str) -> None:
        if self._hidden_depth:
            return
        if self._pending_breaks and (self._pre_depth or text.strip()):
            if self.chunks:
                self.chunks.append(_BREAK * self._pending_breaks)
            self._pending_breaks = 0
        self.chunks.append(text)

    def _break(self, count: int = 1) -> None:
        if self._hidden_depth == 0:
            self._pending_breaks = max(self._pending_breaks, count)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in _HIDDEN:
            self._hidden_depth += 1
        elif tag == "br":
            self._break()
        elif tag == "hr":
            self._break()
            self._emit("-" * 40)
            self._break()
        elif tag == "pre":
            self._pre_depth += 1
            self._break(2)
        elif tag in ("ul", "ol"):
            self._lists.append([0] if tag == "ol" else [])
            self._break(1 if len(self._lists) > 1 else 2)
        elif tag == "li":
            self._break()
            numbering = self._lists[-1] if self._lists else []
            indent = _KEPT_SPACE * 2 * max(len(self._lists) - 1, 0)
            if numbering:
                numbering[0] += 1
                self._emit(f"{indent}{numbering[0]}. ")
            else:
                self._emit(f"{indent}- ")
        elif tag in ("td", "th"):
            self._emit(" ")
        elif tag in _BLOCKS:
            self._break(2 if tag in ("p", "blockquote") or tag[0] == "h" else 1)
        elif tag == "a":
            self._links.append(values.get("href"))
            self._link_start.append(len(self.chunks))
        elif tag == "img":
            alt = (values.get("alt") or "").strip()
            if alt:
                self._emit(f"[{alt}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden_depth = max(self._hidden_depth - 1, 0)
        elif tag == "pre":
            self._pre_depth = max(self._pre_depth - 1, 0)
            self._break(2)
        elif tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._break(2 if not self._lists else 1)
        elif tag == "a" and self._links:
            href = self._links.pop()
            start = self._link_start.pop()
            label = "".join(self.chunks[start:]).replace(_BREAK, "").strip()
            if _shows_address(href, label):
                self._emit(f" ({href})")
        elif tag in _BLOCKS:
            self._break(2 if tag in ("p", "blockquote") or tag[0] == "h" else 1)

    def handle_data(self, data: str) -> None:
        if self._pre_depth:
            # Inside <pre> every space and line break is kept as written.
            self._emit(data.replace("\n", _BREAK).replace(" ", _KEPT_SPACE))
        else:
            self._emit(data)


def _shows_address(href: str | None, label: str) -> bool:
    """Return whether a link's address adds anything to its text."""
    if not href or href.startswith("#") or href.lower().startswith("javascript:"):
        return False
    target = href[len("mailto:") :] if href.lower().startswith("mailto:") else href
    return target.rstrip("/") not in (label.rstrip("/"), "")


def html_to_text(html: str) -> str:
    """Return the readable text of an HTML document or fragment."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()

    text = _SPACES.sub(" ", "".join(extractor.chunks))
    lines = [line.strip(" ") for line in text.split(_BREAK)]
    text = "\n".join(lines).replace(_KEPT_SPACE, " ")
    return _BLANK_LINES.sub("\n\n", text).strip("\n") + "\n"
