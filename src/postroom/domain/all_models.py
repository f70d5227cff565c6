"""Imports every module that defines tables, so the metadata is complete."""

from postroom.domain import (
    models,  # noqa: F401
    usage,  # noqa: F401
)
from postroom.domain import outbox_indexes  # noqa: F401
