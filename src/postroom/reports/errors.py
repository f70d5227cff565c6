"""The error a report raises when it cannot be produced, with its diagnosis."""

from __future__ import annotations

from typing import Any


class ReportError(Exception):
    """A report (or the email around it) that could not be produced.

    ``id`` is a stable name for the kind of failure; ``cause`` and ``fix``
    are the plain-language diagnosis stored with the run.
    """

    def __init__(
        self,
        id: str,
        cause: str,
        fix: str,
        *,
        error: str | None = None,
        step: str = "report",
    ) -> None:
        super().__init__(cause)
        self.id = id
        self.cause = cause
        self.fix = fix
        self.error = error
        self.step = step

    def as_diagnosis(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "step": self.step,
            "cause": self.cause,
            "fix": self.fix,
            "error": self.error,
        }
