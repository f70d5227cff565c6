"""Turn the value of an attachment's ``source`` expression into files."""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from typing import Any

from postroom.errors import InvalidInputError
from postroom.mime.build import Attachment
from postroom.mime.headers import clean_header_text

# 25 MiB of files become about 34 MB of base64, which is within the message
# size most providers accept (Microsoft 365 and Gmail take 35 MB or more).
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
_NOT_CONTENT_ID = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]")


def _decode(content: Any, field: str) -> bytes:
    if not isinstance(content, str):
        raise InvalidInputError("content must be a base64 string", field=field)
    compact = "".join(content.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(
            f"content is not valid base64: {exc}", field=field
        ) from exc


def _items(value: Any) -> list[Any]:
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, list):
        return [item for item in value if item not in (None, "")]
    return [value]


def default_content_id(filename: str) -> str:
    """Return a Content-ID made from a file name: ``logo.png`` stays ``logo.png``."""
    return _NOT_CONTENT_ID.sub("_", filename)[:200] or "inline"


def attachments_from(
    spec: dict[str, Any],
    value: Any,
    rendered: dict[str, str],
    label: str,
) -> list[Attachment]:
    """Build the files of one attachment spec.

    ``value`` is what the ``source`` expression returned, ``rendered`` the
    spec's rendered ``filename`` and ``content_id`` templates.
    """
    items = _items(value)
    if len(items) > 1 and rendered.get("filename"):
        raise InvalidInputError(
            "filename can only be set when source gives one file; leave it out "
            "to use the file names in the data",
            field=f"{label}.filename",
        )

    files = []
    for index, item in enumerate(items):
        field = f"{label}.source" if len(items) == 1 else f"{label}.source[{index}]"
        if isinstance(item, str):
            item = {"content": item}
        if not isinstance(item, dict):
            raise InvalidInputError(
                "must give an object with filename and content, a list of them, "
                f"or a base64 string, not {type(item).__name__}",
                field=field,
            )

        filename = clean_header_text(
            rendered.get("filename") or str(item.get("filename") or "")
        )
        if not filename:
            raise InvalidInputError(
                "has no file name; add filename to the data or to the attachment",
                field=field,
            )
        if "text" in item and "content" not in item:
            content = str(item["text"]).encode("utf-8")
        else:
            content = _decode(item.get("content"), field)

        content_type = spec.get("content_type") or item.get("content_type")
        if not content_type:
            content_type = mimetypes.guess_type(filename)[0] or (
                "application/octet-stream"
            )

        content_id = None
        if spec.get("inline") or item.get("content_id"):
            content_id = clean_header_text(
                rendered.get("content_id") or str(item.get("content_id") or "")
            ) or default_content_id(filename)
        files.append(
            Attachment(
                filename=filename,
                content=content,
                content_type=str(content_type),
                content_id=content_id,
            )
        )
    return files


def check_total_size(files: list[Attachment]) -> None:
    total = sum(len(item.content) for item in files)
    if total > MAX_ATTACHMENT_BYTES:
        raise InvalidInputError(
            f"the attachments add up to {total} bytes; at most "
            f"{MAX_ATTACHMENT_BYTES} fit in one message",
            field="attachments",
        )
