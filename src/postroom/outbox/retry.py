"""When to try a message again, and when to give up."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    max_attempts: int = 8
    max_age_seconds: float = 2 * 24 * 3600.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """Exponential backoff with ±20 % jitter, so retries from many
        messages that failed together do not arrive together."""
        exponent = max(attempt - 1, 0)
        seconds = min(self.base_seconds * (2**exponent), self.max_seconds)
        jitter = (rng or random).uniform(0.8, 1.2)
        return timedelta(seconds=seconds * jitter)

    def gives_up(self, attempt: int, created_at: datetime, now: datetime) -> str | None:
        """Return why no further attempt is made, or None to retry."""
        if attempt >= self.max_attempts:
            return f"gave up after {attempt} attempts"
        age = (now - created_at).total_seconds()
        if age >= self.max_age_seconds:
            return (
                f"gave up: message is older than {self.max_age_seconds / 3600:g} hours"
            )
        return None
