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
from itertools import chain as _chain
from typing import Any, Protocol

from fpdf.fonts import CORE_FONTS_CHARWIDTHS

from postroom.reports.table import cell_text

# Landscape pages, in points (1/72 inch): A4, or A3 for tables with more
# columns than fit A4 readably.
A4_LANDSCAPE = (842, 595)
A3_LANDSCAPE = (1191, 842)
_A4_MAX_COLUMNS = 12
MARGIN = 36
FONT_SIZE = 8
TITLE_SIZE = 11
LINE_HEIGHT = 11
CELL_PADDING = 4
# Rows used to size the columns before the first page is written.
_SAMPLE_ROWS = 200
_MIN_COLUMN = 30.0
_MAX_COLUMN = 320.0
# A cell wraps onto at most this many lines; the rest is cut with "…".
_MAX_CELL_LINES = 4
_ELLIPSIS = "\u2026"  # byte 0x85 in Windows-1252
_BREAK_AFTER = frozenset(b" _-/@")
# A column is never narrower than its widest word, up to this many points.
_MAX_WORD_WIDTH = 90.0

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


def _wrap(text: str, width: float, widths: list[int]) -> list[bytes]:
    """Break ``text`` into lines that fit ``width`` points, at most four.

    Lines break after a space, underscore, hyphen, slash or "@" where
    possible, else inside the word; the last line is cut with an ellipsis
    when the text needs more.
    """
    data = _encode(text.replace("\r", " ").replace("\n", " "))
    if _width(data, widths, FONT_SIZE) <= width:
        return [data]
    lines: list[bytes] = []
    start = 0
    while start < len(data) and len(lines) < _MAX_CELL_LINES - 1:
        used = 0.0
        end = start
        last_space = -1
        while end < len(data):
            used += widths[data[end]] * FONT_SIZE / 1000
            if used > width:
                break
            if data[end] in _BREAK_AFTER:
                last_space = end
            end += 1
        if end >= len(data):
            lines.append(data[start:])
            return lines
        if last_space >= start:
            end = last_space + 1
        end = max(end, start + 1)
        lines.append(data[start:end].rstrip(b" "))
        start = end
    if start < len(data):
        lines.append(_fit(data[start:].decode("cp1252"), width, widths))
    return lines


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
        self._header: list[list[bytes]] = []
        self._page_width, self._page_height = (
            A4_LANDSCAPE if len(columns) <= _A4_MAX_COLUMNS else A3_LANDSCAPE
        )

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

        self._header = self._wrap_row(self._columns, _BOLD)
        room = self._rows_room()
        page: list[list[list[bytes]]] = []
        used = 0
        for cells in _chain(
            sample, ([cell_text(value) for value in row] for row in iterator)
        ):
            wrapped = self._wrap_row(cells, _REGULAR)
            height = max(len(lines) for lines in wrapped) if wrapped else 1
            if page and used + height > room:
                self._page(page)
                page, used = [], 0
            page.append(wrapped)
            used += height
        if page or self._pages == 0:
            self._page(page)
        self._finish()

    def _rows_room(self) -> int:
        """Return how many text lines of rows fit below a page's heading."""
        header_lines = max((len(lines) for lines in self._header), default=1)
        available = (
            self._page_height
            - 2 * MARGIN
            - TITLE_SIZE
            - 8
            - (header_lines + 1) * LINE_HEIGHT
        )
        return max(int(available // LINE_HEIGHT), _MAX_CELL_LINES)

    def _wrap_row(self, cells: Sequence[str], widths: list[int]) -> list[list[bytes]]:
        return [
            _wrap(
                cells[index] if index < len(cells) else "",
                width - 2 * CELL_PADDING,
                widths,
            )
            for index, width in enumerate(self._widths)
        ]

    def _column_widths(self, sample: list[list[str]]) -> list[float]:
        usable = self._page_width - 2 * MARGIN
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
        if sum(natural) <= usable:
            return natural
        floors = [
            min(
                max(self._widest_word(index, sample) + 2 * CELL_PADDING, _MIN_COLUMN),
                _MAX_WORD_WIDTH,
            )
            for index in range(len(self._columns))
        ]
        # Too wide for the page: narrow columns keep their natural width, and
        # the wide ones share what is left, so short values (ids, dates) stay
        # whole and long text wraps.
        widths = list(natural)
        wide = set(range(len(widths)))
        while wide:
            share = (
                usable - sum(widths[i] for i in range(len(widths)) if i not in wide)
            ) / len(wide)
            narrow = {i for i in wide if natural[i] <= share}
            if not narrow:
                for i in wide:
                    widths[i] = max(share, floors[i])
                break
            wide -= narrow
        total = sum(widths)
        if total > usable:
            # The widest words alone do not fit: every column gives way.
            widths = [width * usable / total for width in widths]
        return widths

    def _widest_word(self, index: int, sample: list[list[str]]) -> float:
        words = [(self._columns[index], _BOLD)]
        words.extend((cells[index], _REGULAR) for cells in sample if index < len(cells))
        widest = 0.0
        for text, widths in words:
            for word in _encode(text).replace(b"_", b" ").split():
                widest = max(widest, _width(word, widths, FONT_SIZE))
        return widest

    def _page(self, rows: list[list[list[bytes]]]) -> None:
        lines: list[bytes] = []
        top = self._page_height - MARGIN
        heading = f"{self._title} - page {self._pages + 1}"
        lines.append(
            b"BT /F2 %d Tf %d %d Td %s Tj ET"
            % (TITLE_SIZE, MARGIN, top - TITLE_SIZE, _literal(_encode(heading)))
        )
        y: float = top - TITLE_SIZE - 8 - LINE_HEIGHT
        y = self._row(lines, self._header, y, bold=True)
        rule = y + LINE_HEIGHT - 3
        lines.append(
            b"0.5 w %d %.2f m %d %.2f l S"
            % (MARGIN, rule, self._page_width - MARGIN, rule)
        )
        for cells in rows:
            y = self._row(lines, cells, y, bold=False)
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
                self._page_width,
                self._page_height,
                content_number,
                _FONT_REGULAR,
                _FONT_BOLD,
            ),
        )
        self._pages += 1

    def _row(
        self, out: list[bytes], cells: list[list[bytes]], y: float, *, bold: bool
    ) -> float:
        """Append a row's text to ``out``; return the baseline of the next row."""
        height = max((len(lines) for lines in cells), default=1)
        for line in range(height):
            parts = [
                b"BT /F%d %d Tf %d %.2f Td"
                % (2 if bold else 1, FONT_SIZE, MARGIN + CELL_PADDING, y)
            ]
            for index, lines in enumerate(cells):
                if index:
                    parts.append(b"%.2f 0 Td" % self._widths[index - 1])
                text = lines[line] if line < len(lines) else b""
                parts.append(_literal(text) + b" Tj")
            parts.append(b"ET")
            out.append(b" ".join(parts))
            y -= LINE_HEIGHT
        return y

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
