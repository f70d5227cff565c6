"""Imports every module that defines tables, so the metadata is complete."""

from postroom.domain import (
    models,  # noqa: F401
    outbox_indexes,  # noqa: F401
    usage,  # noqa: F401
)
