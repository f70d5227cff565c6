"""The shape of a catalogue entry and how it matches a failure."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from postroom.smtp.errors import ErrorKind, SmtpFailure, Step


@dataclass(frozen=True)
class Context:
    """The failure together with what the diagnosis may need around it."""

    failure: SmtpFailure
    host: str | None = None
    port: int | None = None
    security: str | None = None
    mechanism: str | None = None
    login: str | None = None
    # Facts found after the failure, such as whether implicit TLS answers on
    # the same port; see postroom.diagnosis.followup.
    facts: dict[str, Any] = field(default_factory=dict)
    # False for a pasted reply, where the failed step is a guess, so the
    # advice reads "the SMTP dialogue" instead of naming a step.
    step_known: bool = True

    @property
    def text(self) -> str:
        """Reply text, or the client error text, as one string to match."""
        return " ".join(
            part for part in (self.failure.reply_text, self.failure.error) if part
        )

    def fact(self, name: str, default: Any = None) -> Any:
        if name in self.facts:
            return self.facts[name]
        return self.failure.details.get(name, default)


# Weights for "the most specific match wins": a provider's own text beats an
# enhanced status code, which beats an exact reply code, which beats a class.
_TEXT_WEIGHT = 1000
_PREDICATE_WEIGHT = 400
_ENHANCED_WEIGHT = 100
_CODE_WEIGHT = 20
_CLASS_WEIGHT = 5
_KIND_WEIGHT = 3
_STEP_WEIGHT = 2


@dataclass(frozen=True)
class Entry:
    """One known failure: when it applies, what it means and what to change.

    Every criterion that is set must match; the score of a match is the sum
    of the weights of the criteria that were set. ``cause`` and ``fix`` are
    format strings over the names listed in ``postroom.diagnosis.engine``.
    """

    id: str
    cause: str
    fix: str
    # True when retrying later can succeed without anyone changing anything.
    transient: bool
    # The profile field (or "provider" for a change at the provider) that the
    # fix asks the operator to change.
    setting: str
    steps: frozenset[Step] | None = None
    kinds: frozenset[ErrorKind] | None = None
    reply_codes: frozenset[int] | None = None
    reply_class: int | None = None
    enhanced: frozenset[str] | None = None
    text: re.Pattern[str] | None = None
    when: Callable[[Context], bool] | None = None

    def score(self, context: Context) -> int | None:
        """Return how specifically this entry matches, or None if it does not."""
        failure = context.failure
        total = 0
        if self.steps is not None:
            if failure.step not in self.steps:
                return None
            total += _STEP_WEIGHT
        if self.kinds is not None:
            if failure.kind not in self.kinds:
                return None
            total += _KIND_WEIGHT
        if self.reply_codes is not None:
            if failure.reply_code not in self.reply_codes:
                return None
            total += _CODE_WEIGHT
        if self.reply_class is not None:
            if (
                failure.reply_code is None
                or failure.reply_code // 100 != self.reply_class
            ):
                return None
            total += _CLASS_WEIGHT
        if self.enhanced is not None:
            if failure.enhanced_status not in self.enhanced:
                return None
            total += _ENHANCED_WEIGHT
        if self.text is not None:
            if not self.text.search(context.text):
                return None
            total += _TEXT_WEIGHT
        if self.when is not None:
            if not self.when(context):
                return None
            total += _PREDICATE_WEIGHT
        return total


def steps(*values: Step) -> frozenset[Step]:
    return frozenset(values)


def kinds(*values: ErrorKind) -> frozenset[ErrorKind]:
    return frozenset(values)


def codes(*values: int) -> frozenset[int]:
    return frozenset(values)


def enhanced(*values: str) -> frozenset[str]:
    return frozenset(values)


def pattern(regex: str) -> re.Pattern[str]:
    return re.compile(regex, re.IGNORECASE)
