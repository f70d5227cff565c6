"""Imports every module that defines tables, so the metadata is complete."""

from postroom.domain import (
    models,  # noqa: F401
    notifications,  # noqa: F401
    oauth_models,  # noqa: F401
    outbox_indexes,  # noqa: F401
    scheduling,  # noqa: F401
    usage,  # noqa: F401
)
