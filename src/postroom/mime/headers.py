"""Header values rendered to their wire form: RFC 2047, RFC 2231 and folding.

A value written by the email package's own folding can come back changed:
text that looks like an encoded word (``=?utf-8?q?...?=``) is decoded when
read, even inside a quoted string, and leading spaces are dropped. A subject
or file name taken from event data must come back exactly as it went in, so
such values are encoded here into ASCII lines of at most 78 characters
(RFC 5322, 2.1.1). They are stored with ``set_raw``, and the generator writes
them unchanged.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from email.headerregistry import Address
from urllib.parse import quote

from postroom.errors import InvalidInputError

# RFC 5322, 2.1.1: lines SHOULD be at most 78 characters without the CRLF.
MAX_LINE = 78
# RFC 2047, 2: an encoded word is at most 75 characters.
_MAX_ENCODED_WORD = 75
_PREFIX = "=?utf-8?"
_SUFFIX = "?="
# RFC 2047, 5 (3): the characters a Q-encoded word may contain unencoded
# inside a phrase. This is the stricter of the two rules, used everywhere.
_Q_LITERAL = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/"
)
# RFC 5322, 3.2.3: atext, the characters of an unquoted display name word.
_ATEXT = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~"
)
# RFC 2231, 7: attribute-char, what an extended parameter value carries
# without percent-encoding.
_ATTRIBUTE_CHARS = "!#$&+-.^_`|~"
# A CR LF pair counts as one line break, so it becomes one space. NEL,
# U+2028 and U+2029 are line breaks to str.splitlines() and the email
# package, and postroom.domain.validation rejects them in typed input.
_CONTROLS = re.compile(r"\r\n|[\x00-\x1f\x7f\x85\u2028\u2029]")
_SPACE_RUNS = re.compile(r"[ \t]+")
_WSP_WORD = re.compile(r"[ \t]*[^ \t]+|[ \t]+$")


def clean_header_text(value: str) -> str:
    """Fold a value safely onto one line: control characters become spaces.

    Line separators (NEL, U+2028, U+2029) count as control characters here.

    CR and LF are the characters that could start a new header or end the
    message, so values rendered from event data pass through here before
    they reach a header.
    """
    return _CONTROLS.sub(" ", value).strip()


def clean_display_name(value: str) -> str:
    """Return a display name as mail readers show it: one line, single spaces."""
    return _SPACE_RUNS.sub(" ", clean_header_text(value)).strip()


def check_encodable(value: str, field: str) -> None:
    """Reject strings that cannot be written as UTF-8 (lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"contains invalid Unicode (a lone surrogate at position {exc.start}); "
            "send text encoded as UTF-8",
            field=field,
        ) from exc


def _q_encode(char: str) -> str:
    if char in _Q_LITERAL:
        return char
    if char == " ":
        return "_"
    return "".join(f"={byte:02X}" for byte in char.encode("utf-8"))


def encoded_words(
    value: str, first_width: int = _MAX_ENCODED_WORD, *, break_at_spaces: bool = False
) -> list[str]:
    """Split ``value`` into RFC 2047 encoded words, never splitting a character.

    Q or B encoding is chosen by which one is shorter for the whole value.
    The first word fits in ``first_width`` characters, the others in 75.
    With ``break_at_spaces`` a word ends after a space where one is near.
    Some parsers wrongly add a space between encoded words in a display name
    (Python's email package before CPython gh-128110), and this way they only
    widen an existing space instead of splitting a word.
    """
    q_pieces = [_q_encode(char) for char in value]
    q_length = sum(len(piece) for piece in q_pieces)
    b_length = (len(value.encode("utf-8")) + 2) // 3 * 4
    if q_length <= b_length:
        return _pack(q_pieces, list(value), "q", first_width, break_at_spaces)
    return _pack(list(value), list(value), "b", first_width, break_at_spaces)


def _pack(
    pieces: list[str],
    chars: list[str],
    kind: str,
    first_width: int,
    break_at_spaces: bool,
) -> list[str]:
    overhead = len(_PREFIX) + 2 + len(_SUFFIX)
    words: list[str] = []
    current: list[str] = []
    current_chars: list[str] = []
    width = max(first_width, overhead + 12)

    def size(chunk: list[str]) -> int:
        if kind == "q":
            return sum(len(piece) for piece in chunk)
        return (len("".join(chunk).encode("utf-8")) + 2) // 3 * 4

    def flush() -> None:
        text = "".join(current)
        if kind == "b":
            text = base64.b64encode(text.encode("utf-8")).decode("ascii")
        words.append(f"{_PREFIX}{kind}?{text}{_SUFFIX}")

    for piece, char in zip(pieces, chars, strict=True):
        if current and size([*current, piece]) + overhead > width:
            carry: list[str] = []
            carry_chars: list[str] = []
            if break_at_spaces and " " in current_chars[1:]:
                cut = len(current_chars) - current_chars[::-1].index(" ")
                carry, carry_chars = current[cut:], current_chars[cut:]
                current, current_chars = current[:cut], current_chars[:cut]
            flush()
            current, current_chars = carry, carry_chars
            width = _MAX_ENCODED_WORD
        current.append(piece)
        current_chars.append(char)
    if current or not words:
        flush()
    return words


def _needs_encoding(value: str) -> bool:
    return (
        not all(" " <= char <= "~" or char == "\t" for char in value)
        or "=?" in value
        or value != value.strip(" \t")
    )


def fold_tokens(tokens: Sequence[str], first_width: int) -> str:
    """Join tokens with single spaces, breaking lines before a token as needed.

    A token that is longer than a line stays whole: RFC 5322 allows lines up
    to 998 octets, and only an unusually long address reaches that far.
    """
    lines: list[str] = []
    line = ""
    width = first_width
    for token in tokens:
        candidate = f"{line} {token}" if line else token
        if line and len(candidate) > width:
            lines.append(line)
            line = " " + token
            width = MAX_LINE
        else:
            line = candidate
    lines.append(line)
    return "\r\n".join(lines)


def format_unstructured(name: str, value: str) -> str:
    """Render an unstructured value (Subject, custom headers) for ``set_raw``.

    Printable ASCII is folded at its own spaces, which unfolding restores
    exactly; anything else is written as encoded words.
    """
    first_width = MAX_LINE - len(name) - 2
    if not _needs_encoding(value):
        words = _WSP_WORD.findall(value)
        fits = all(len(word) < MAX_LINE for word in words)
        if words and fits and len(words[0]) <= first_width:
            return _fold_plain(words, first_width)
    if first_width < 20:
        # Too little room after a long header name: start on the next line.
        return "\r\n" + fold_tokens(encoded_words(value), MAX_LINE)
    return fold_tokens(encoded_words(value, first_width), first_width)


def _fold_plain(words: list[str], first_width: int) -> str:
    # Each word after the first keeps the whitespace before it, so a line
    # break is always inserted before whitespace and unfolding loses nothing.
    lines: list[str] = []
    line = ""
    width = first_width
    for word in words:
        if line and len(line) + len(word) > width:
            lines.append(line)
            line = word
            width = MAX_LINE
        else:
            line += word
    lines.append(line)
    return "\r\n".join(lines)


def format_phrase(display_name: str) -> list[str]:
    """Render a display name as header tokens: atoms, a quoted string or encoded words."""
    if not display_name:
        return []
    if _needs_encoding(display_name) or "  " in display_name:
        return encoded_words(display_name, break_at_spaces=True)
    if all(char in _ATEXT or char == " " for char in display_name):
        return [display_name]
    escaped = display_name.replace("\\", "\\\\").replace('"', '\\"')
    quoted = f'"{escaped}"'
    if len(quoted) > MAX_LINE - 2:
        return encoded_words(display_name, break_at_spaces=True)
    return [quoted]


def format_address(display_name: str, local_part: str, domain: str) -> list[str]:
    """Render one mailbox as tokens: the phrase, then ``<addr-spec>``."""
    addr_spec = Address(username=local_part, domain=domain).addr_spec
    phrase = format_phrase(display_name)
    if not phrase:
        return [addr_spec]
    return [*phrase, f"<{addr_spec}>"]


def format_address_list(name: str, mailboxes: Iterable[list[str]]) -> str:
    """Render mailboxes (token lists from ``format_address``) as one header value."""
    tokens: list[str] = []
    groups = list(mailboxes)
    for index, group in enumerate(groups):
        if index < len(groups) - 1:
            group = [*group[:-1], group[-1] + ","]
        tokens.extend(group)
    return fold_tokens(tokens, MAX_LINE - len(name) - 2)


def _is_plain_parameter(value: str) -> bool:
    return (
        0 < len(value) <= 60
        and all(" " <= char <= "~" for char in value)
        and "=?" not in value
        and value == value.strip()
    )


def format_parameters(value: str, parameters: Sequence[tuple[str, str]]) -> str:
    """Render ``value; name=...`` with RFC 2231 for values that need it.

    A value that is not short printable ASCII is percent-encoded as UTF-8
    (``filename*=utf-8''...``) and split into numbered sections
    (``filename*0*``, ``filename*1*``) so that no line passes 78 characters.
    """
    tokens = [value]
    for name, raw in parameters:
        if _is_plain_parameter(raw):
            escaped = raw.replace("\\", "\\\\").replace('"', '\\"')
            tokens.append(f'{name}="{escaped}"')
            continue
        encoded = quote(raw.encode("utf-8"), safe=_ATTRIBUTE_CHARS)
        if len(encoded) + len(name) + 10 <= MAX_LINE - 2:
            tokens.append(f"{name}*=utf-8''{encoded}")
            continue
        # Room on a line for one section: a leading space, "name*NN*=", the
        # charset prefix and the closing semicolon.
        size = MAX_LINE - len(name) - len("utf-8''") - 8
        for index, section in enumerate(_sections(encoded, size)):
            lead = "utf-8''" if index == 0 else ""
            tokens.append(f"{name}*{index}*={lead}{section}")
    for index in range(len(tokens) - 1):
        tokens[index] += ";"
    return fold_tokens(tokens, MAX_LINE - len("Content-Disposition") - 2)


def _sections(encoded: str, size: int) -> list[str]:
    # Never split a %XX escape between two sections.
    sections = []
    start = 0
    while start < len(encoded):
        end = min(start + size, len(encoded))
        percent = encoded.rfind("%", max(start, end - 2), end)
        if percent != -1 and end < len(encoded) and percent > end - 3:
            end = percent
        sections.append(encoded[start:end])
        start = end
    return sections
