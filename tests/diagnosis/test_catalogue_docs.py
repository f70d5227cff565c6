"""docs/diagnosis.md lists every catalogue entry as the catalogue has it."""

from __future__ import annotations

import re
from pathlib import Path

from postroom.diagnosis.catalogue import CATALOGUE

DOC = Path(__file__).resolve().parents[2] / "docs" / "diagnosis.md"
ROW = re.compile(
    r"^\| `(?P<id>[a-z0-9-]+)` \| .* \| (?P<retry>yes|no) \| (?P<rest>.*)\|$"
)


def documented() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            rows[match["id"]] = (match["retry"], match["rest"].strip())
    return rows


def test_every_entry_has_a_row() -> None:
    rows = documented()

    missing = [entry.id for entry in CATALOGUE if entry.id not in rows]

    assert missing == []


def test_retry_and_setting_match_the_catalogue() -> None:
    rows = documented()

    for entry in CATALOGUE:
        retry, setting = rows[entry.id]
        assert retry == ("yes" if entry.transient else "no"), entry.id
        if entry.setting:
            assert f"`{entry.setting}`" in setting, entry.id
