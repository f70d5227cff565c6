"""Errors that services raise and every interface turns into its own form.

The API maps them to HTTP statuses, the CLI to messages and exit codes.
Each carries the field at fault where there is one, so the user knows what
to change.
"""

from __future__ import annotations


class PostroomError(Exception):
    """Base of the errors a service raises for a caller to show."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        if self.field:
            return f"{self.field}: {self.message}"
        return self.message


class InvalidInputError(PostroomError):
    """Input that breaks a rule; nothing was stored."""


class NotFoundError(PostroomError):
    """The named resource does not exist."""


class ConflictError(PostroomError):
    """The request clashes with stored state (a name taken, a protected row)."""
