"""Imports every module that defines tables, so the metadata is complete."""

from postroom.domain import models, scheduling  # noqa: F401
