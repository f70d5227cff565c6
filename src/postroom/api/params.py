"""Path and query parameters shared by several routes, with their bounds.

Ids are bounded to PostgreSQL's integer range, which the id columns use:
a larger number can name no row, and passing it to the database fails
instead of finding nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from postroom.domain.validation import MAX_PAGE_SIZE, MAX_ROW_ID

IdPath = Annotated[
    int, Path(alias="id", ge=1, le=MAX_ROW_ID, description="The row's id")
]
LimitQuery = Annotated[
    int, Query(ge=1, le=MAX_PAGE_SIZE, description="How many, newest first")
]
BeforeIdQuery = Annotated[
    int | None,
    Query(ge=1, le=MAX_ROW_ID, description="Page: ids below this one"),
]
