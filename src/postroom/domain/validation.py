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

from email_validator import EmailNotValidError, validate_email

from postroom.errors import InvalidInputError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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


def check_single_line(value: str, field: str) -> str:
    """Reject control characters; CR or LF would let a value start a new header."""
    match = _CONTROL.search(value)
    if match:
        char = repr(match.group())
        raise InvalidInputError(
            f"must be a single line without control characters (found {char})",
            field=field,
        )
    return value


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
    """Check that a CA bundle file exists and holds at least one certificate."""
    if not Path(path).is_file():
        raise InvalidInputError(
            f"CA bundle file {path!r} does not exist or is not a file", field=field
        )
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise InvalidInputError(
            f"CA bundle file {path!r} cannot be used ({exc}); it must be a PEM file "
            "with -----BEGIN CERTIFICATE----- blocks",
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
