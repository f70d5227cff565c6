"""Input checks shared by profiles, messages and templates.

Each check raises InvalidInputError naming the field and the fix.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass
from email import errors as email_errors
from email.headerregistry import Address, HeaderRegistry
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import String
from sqlalchemy.orm import QueryableAttribute

from postroom.errors import InvalidInputError

# C0 controls, DEL, and the characters besides CR and LF that str.splitlines()
# and Python's email package treat as line breaks: NEL (U+0085), LINE
# SEPARATOR (U+2028) and PARAGRAPH SEPARATOR (U+2029). VT and FF are C0.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_HOST_LABEL = re.compile(r"^(?!-)[\w-]{1,63}(?<!-)$", re.UNICODE)
_HEADERS = HeaderRegistry()


@dataclass(frozen=True)
class Mailbox:
    """An address with its optional display name, as in a From header."""

    display_name: str
    addr_spec: str

    def __str__(self) -> str:
        if not self.display_name:
            return self.addr_spec
        # Render through the header registry so a display name with commas
        # or quotes comes out quoted correctly.
        return str(_HEADERS("To", f"{_quote(self.display_name)} <{self.addr_spec}>"))

    @property
    def needs_smtputf8(self) -> bool:
        local, _, _ = self.addr_spec.rpartition("@")
        return not local.isascii()


def _quote(display_name: str) -> str:
    escaped = display_name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# The largest page a list request returns (API limit, CLI --limit).
MAX_PAGE_SIZE = 500
# The largest value of a PostgreSQL integer column, which row ids are: an id
# beyond it can name no row, and PostgreSQL rejects it as out of range.
MAX_ROW_ID = 2**31 - 1


def check_single_line(value: str, field: str) -> str:
    """Reject control characters and line separators.

    CR or LF would let a value start a new header, and the email package
    also breaks lines at NEL, U+2028 and U+2029.
    """
    match = _CONTROL.search(value)
    if match:
        char = f"U+{ord(match.group()):04X}"
        raise InvalidInputError(
            "must be a single line without control characters or line "
            f"separators (found {char}); remove it",
            field=field,
        )
    return value


def check_length(value: str, field: str, maximum: int) -> str:
    """Reject a value longer than its database column allows."""
    if len(value) > maximum:
        raise InvalidInputError(
            f"must be at most {maximum} characters, got {len(value)}; shorten it",
            field=field,
        )
    return value


def column_length(attribute: QueryableAttribute[Any]) -> int:
    """Return the declared length of a String column, such as Profile.client."""
    column_type = attribute.expression.type
    if not isinstance(column_type, String) or column_type.length is None:
        raise TypeError(f"{attribute} is not a String column with a length")
    return column_type.length


def check_row_id(value: int, field: str = "id") -> int:
    """Reject an id no row can have: below 1 or beyond PostgreSQL's integer."""
    if not 1 <= value <= MAX_ROW_ID:
        raise InvalidInputError(
            f"must be a whole number from 1 to {MAX_ROW_ID}, got {value}",
            field=field,
        )
    return value


def check_count(value: int, field: str, maximum: int) -> int:
    """Reject a result count (a page size, a number of runs) out of 1..maximum."""
    if not 1 <= value <= maximum:
        raise InvalidInputError(
            f"must be from 1 to {maximum}, got {value}", field=field
        )
    return value


def check_file(path: str, field: str, what: str) -> Path:
    """Check that ``path`` names a regular file; return it as a Path.

    A path the operating system cannot even look up (too long, a NUL byte)
    is invalid input like a missing file, not a server error.
    """
    check_single_line(path, field)
    try:
        is_file = Path(path).is_file()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InvalidInputError(
            f"{what} {_shorten(path)!r} cannot be looked up ({reason}); give the "
            "path of an existing file",
            field=field,
        ) from exc
    if not is_file:
        raise InvalidInputError(
            f"{what} {_shorten(path)!r} does not exist or is not a file", field=field
        )
    return Path(path)


def _shorten(value: str, keep: int = 80) -> str:
    """Return at most ``keep`` characters of a value quoted in a message."""
    return value if len(value) <= keep else value[:keep] + "..."


def check_host(value: str, field: str) -> str:
    value = check_single_line(value.strip(), field)
    if not value:
        raise InvalidInputError("is required", field=field)
    if "://" in value or value.count(":") == 1 or "/" in value:
        raise InvalidInputError(
            f"{value!r} is not a host name; enter only the server name, such as "
            "smtp.office365.com, without a scheme or port (the port has its own field)",
            field=field,
        )
    try:
        ipaddress.ip_address(value.strip("[]"))
        return value.strip("[]")
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise InvalidInputError(
            f"{value!r} is not a valid host name or IP address", field=field
        )
    return value


def check_ca_bundle(path: str, field: str) -> str:
    """Check that a CA bundle file exists and contains at least one certificate."""
    check_file(path, field, "CA bundle file")
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise InvalidInputError(
            f"CA bundle file {_shorten(path)!r} cannot be used ({exc}); it must be a "
            "PEM file with -----BEGIN CERTIFICATE----- blocks",
            field=field,
        ) from exc
    return path


def check_address(addr_spec: str, field: str) -> str:
    """Validate an addr-spec (local@domain), with no display name."""
    check_single_line(addr_spec, field)
    try:
        validate_email(
            addr_spec,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_domain_literal=True,
            allow_display_name=False,
        )
    except EmailNotValidError as exc:
        raise InvalidInputError(
            f"{addr_spec!r} is not a valid email address: {exc}", field=field
        ) from exc
    return addr_spec


def parse_mailbox(value: str, field: str) -> Mailbox:
    """Parse ``Name <local@domain>`` or a bare address into a Mailbox."""
    check_single_line(value, field)
    value = value.strip()
    if not value:
        raise InvalidInputError("is required", field=field)
    try:
        header = _HEADERS("From", value)
    except (IndexError, ValueError) as exc:
        raise InvalidInputError(
            f"{value!r} is not a valid address; use name@example.com or "
            "Name <name@example.com>",
            field=field,
        ) from exc
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    # A non-ASCII local part is legal with SMTPUTF8 (RFC 6531); the transport
    # checks that the server offers that extension.
    defects = [
        defect
        for defect in header.defects
        if not isinstance(defect, email_errors.NonASCIILocalPartDefect)
    ]
    if len(addresses) != 1 or defects or not addresses[0].domain:
        raise InvalidInputError(
            f"{value!r} is not a single valid address; use name@example.com or "
            "Name <name@example.com>",
            field=field,
        )
    address = addresses[0]
    addr_spec = check_address(address.addr_spec, field)
    return Mailbox(display_name=address.display_name, addr_spec=addr_spec)
