"""A PDF table writer that streams: each page is written as soon as it is full.

PDF libraries such as fpdf2 keep every page in memory until the document is
saved, so a 100,000-row report would need memory in proportion. This writer
emits each page's objects when the page is full and keeps only the byte
offset of every object, for the cross-reference table written at the end
(ISO 32000-1, 7.5). Text uses the standard Helvetica fonts, which every PDF
reader has, so nothing is embedded.

NOTE: the standard fonts cover the Windows-1252 character set only; other
characters are printed as '?'. CSV and XLSX keep every character.
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from fpdf.fonts import CORE_FONTS_CHARWIDTHS

from postroom.reports.table import cell_text

# A4 landscape, in points (1/72 inch).
PAGE_WIDTH = 842
PAGE_HEIGHT = 595
MARGIN = 36
FONT_SIZE = 8
TITLE_SIZE = 11
LINE_HEIGHT = 11
CELL_PADDING = 4
# Rows used to size the columns before the first page is written.
_SAMPLE_ROWS = 200
_MIN_COLUMN = 30.0
_MAX_COLUMN = 320.0
_ELLIPSIS = "\x85"  # "…" in Windows-1252

# Glyph widths in 1/1000 em, indexed by Windows-1252 byte.
_REGULAR = [CORE_FONTS_CHARWIDTHS["helvetica"][chr(byte)] for byte in range(256)]
_BOLD = [CORE_FONTS_CHARWIDTHS["helveticaB"][chr(byte)] for byte in range(256)]
_WIDEST = max(*_REGULAR, *_BOLD)

# Objects 1 to 5 have fixed numbers. Each page then takes two objects, its
# content stream and the page itself, so page k's numbers are known early.
_CATALOG, _PAGES, _FONT_REGULAR, _FONT_BOLD, _INFO = 1, 2, 3, 4, 5
_FIRST_PAGE_OBJECT = 6


class _Writable(Protocol):
    def write(self, data: bytes) -> int: ...


def _encode(text: str) -> bytes:
    return text.encode("cp1252", errors="replace")


def _width(data: bytes, widths: list[int], size: float) -> float:
    return sum(map(widths.__getitem__, data)) * size / 1000


def _literal(data: bytes) -> bytes:
    escaped = data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    # Line ends inside a string would be read as part of the text.
    escaped = escaped.replace(b"\r", b"\\r").replace(b"\n", b"\\n")
    return b"(" + escaped + b")"


def _fit(text: str, width: float, widths: list[int]) -> bytes:
    """Encode ``text`` cut with an ellipsis to fit ``width`` points."""
    data = _encode(text.replace("\r", " ").replace("\n", " "))
    # Most cells are short: no need to add up their glyphs.
    if len(data) * _WIDEST * FONT_SIZE / 1000 <= width:
        return data
    if _width(data, widths, FONT_SIZE) <= width:
        return data
    ellipsis = _encode(_ELLIPSIS)
    room = width - _width(ellipsis, widths, FONT_SIZE)
    used = 0.0
    for index, byte in enumerate(data):
        used += widths[byte] * FONT_SIZE / 1000
        if used > room:
            return data[:index] + ellipsis
    return data


class PdfTableWriter:
    """Writes one table as a PDF to ``stream``, a page at a time."""

    def __init__(self, stream: _Writable, title: str, columns: list[str]) -> None:
        self._stream = stream
        self._title = title
        self._columns = columns
        self._offset = 0
        # Object number -> byte offset; 8 bytes per object.
        self._offsets = array("Q", [0] * _FIRST_PAGE_OBJECT)
        self._pages = 0
        self._widths: list[float] = []

    def write(self, rows: Iterable[Sequence[Any]]) -> None:
        iterator = iter(rows)
        sample = []
        for row in iterator:
            sample.append([cell_text(value) for value in row])
            if len(sample) >= _SAMPLE_ROWS:
                break
        self._widths = self._column_widths(sample)

        self._emit(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        self._object(_FONT_REGULAR, self._font(b"Helvetica"))
        self._object(_FONT_BOLD, self._font(b"Helvetica-Bold"))

        per_page = int((PAGE_HEIGHT - 2 * MARGIN - 2 * LINE_HEIGHT - 8) // LINE_HEIGHT)
        page: list[list[str]] = []
        for cells in sample:
            page.append(cells)
            if len(page) == per_page:
                self._page(page)
                page = []
        del sample
        for row in iterator:
            page.append([cell_text(value) for value in row])
            if len(page) == per_page:
                self._page(page)
                page = []
        if page or self._pages == 0:
            self._page(page)
        self._finish()

    def _column_widths(self, sample: list[list[str]]) -> list[float]:
        usable = PAGE_WIDTH - 2 * MARGIN
        if not self._columns:
            return []
        natural = []
        for index, column in enumerate(self._columns):
            widest = _width(_encode(column), _BOLD, FONT_SIZE)
            for cells in sample:
                if index < len(cells):
                    widest = max(
                        widest, _width(_encode(cells[index]), _REGULAR, FONT_SIZE)
                    )
            natural.append(
                min(max(widest + 2 * CELL_PADDING, _MIN_COLUMN), _MAX_COLUMN)
            )
        total = sum(natural)
        if total <= usable:
            return natural
        return [width * usable / total for width in natural]

    def _page(self, rows: list[list[str]]) -> None:
        lines: list[bytes] = []
        top = PAGE_HEIGHT - MARGIN
        heading = f"{self._title} - page {self._pages + 1}"
        lines.append(
            b"BT /F2 %d Tf %d %d Td %s Tj ET"
            % (TITLE_SIZE, MARGIN, top - TITLE_SIZE, _literal(_encode(heading)))
        )
        y = top - TITLE_SIZE - 8 - LINE_HEIGHT
        lines.append(self._row(self._columns, y, bold=True))
        rule = y - 3
        lines.append(
            b"0.5 w %d %.2f m %d %.2f l S" % (MARGIN, rule, PAGE_WIDTH - MARGIN, rule)
        )
        for cells in rows:
            y -= LINE_HEIGHT
            lines.append(self._row(cells, y, bold=False))
        content = zlib.compress(b"\n".join(lines))

        content_number = _FIRST_PAGE_OBJECT + 2 * self._pages
        self._object(
            content_number,
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream"
            % (len(content), content),
        )
        self._object(
            content_number + 1,
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R /F2 %d 0 R >> >> >>"
            % (
                _PAGES,
                PAGE_WIDTH,
                PAGE_HEIGHT,
                content_number,
                _FONT_REGULAR,
                _FONT_BOLD,
            ),
        )
        self._pages += 1

    def _row(self, cells: Sequence[str], y: float, *, bold: bool) -> bytes:
        widths = _BOLD if bold else _REGULAR
        parts = [
            b"BT /F%d %d Tf %d %.2f Td"
            % (2 if bold else 1, FONT_SIZE, MARGIN + CELL_PADDING, y)
        ]
        for index, width in enumerate(self._widths):
            text = cells[index] if index < len(cells) else ""
            if index:
                parts.append(b"%.2f 0 Td" % self._widths[index - 1])
            parts.append(
                _literal(_fit(text, width - 2 * CELL_PADDING, widths)) + b" Tj"
            )
        parts.append(b"ET")
        return b" ".join(parts)

    @staticmethod
    def _font(name: bytes) -> bytes:
        return (
            b"<< /Type /Font /Subtype /Type1 /BaseFont /%s /Encoding /WinAnsiEncoding >>"
            % name
        )

    def _finish(self) -> None:
        self._record(_PAGES)
        self._emit(
            b"%d 0 obj\n<< /Type /Pages /Count %d /Kids [" % (_PAGES, self._pages)
        )
        # The list is written in pieces: it is the one part whose length
        # grows with the page count.
        for start in range(0, self._pages, 500):
            end = min(start + 500, self._pages)
            self._emit(
                b" ".join(
                    b"%d 0 R" % (_FIRST_PAGE_OBJECT + 2 * page + 1)
                    for page in range(start, end)
                )
                + b" "
            )
        self._emit(b"] >>\nendobj\n")
        self._object(_CATALOG, b"<< /Type /Catalog /Pages %d 0 R >>" % _PAGES)
        created = datetime.now(UTC).strftime("D:%Y%m%d%H%M%SZ").encode()
        self._object(
            _INFO,
            b"<< /Title %s /Producer (Postroom) /CreationDate (%s) >>"
            % (_literal(_encode(self._title)), created),
        )

        xref_offset = self._offset
        count = len(self._offsets)
        self._emit(b"xref\n0 %d\n0000000000 65535 f \n" % count)
        for number in range(1, count):
            self._emit(b"%010d 00000 n \n" % self._offsets[number])
        self._emit(
            b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (count, _CATALOG, _INFO, xref_offset)
        )

    def _record(self, number: int) -> None:
        while len(self._offsets) <= number:
            self._offsets.append(0)
        self._offsets[number] = self._offset

    def _object(self, number: int, body: bytes) -> None:
        self._record(number)
        self._emit(b"%d 0 obj\n%s\nendobj\n" % (number, body))

    def _emit(self, data: bytes) -> None:
        self._stream.write(data)
        self._offset += len(data)
