"""Find the catalogue entry that explains a failure and render its advice."""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass
from typing import Any

from postroom.diagnosis.catalogue import CATALOGUE, FALLBACK
from postroom.diagnosis.entry import Context, Entry
from postroom.smtp.errors import SmtpFailure
from postroom.smtp.replies import printable, printable_reply
from postroom.smtp.settings import ConnectionSettings

__all__ = ["Context", "Diagnosis", "diagnose", "diagnose_failure", "explain"]


@dataclass(frozen=True)
class Diagnosis:
    """What went wrong, in the server's words and in plain language."""

    id: str
    step: str
    reply_code: int | None
    enhanced_status: str | None
    reply_text: str | None
    error: str | None
    cause: str
    fix: str
    transient: bool
    setting: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _join(values: Any) -> str:
    items = [str(value) for value in values or []]
    return ", ".join(items) if items else "none"


def _values(context: Context) -> _Values:
    failure = context.failure
    reply = failure.reply_text or ""
    if failure.reply_code is not None:
        reply = f"{failure.reply_code} {failure.reply_text or ''}".strip()
    # cause and fix are single lines: a line break or other control
    # character in the server's text, or in pasted text, is escaped.
    values = _Values(
        step=failure.step.value if context.step_known else "the SMTP dialogue",
        host=context.host or "the server",
        port=str(context.port or "(unknown)"),
        security=context.security or "",
        mechanism=context.mechanism or "",
        login=context.login or "",
        reply=printable(reply),
        error=printable(failure.error or ""),
        offered=_join(context.fact("offered")),
        names=_join(context.fact("certificate_names")),
        expires=str(context.fact("certificate_expires", "")),
        size=str(context.fact("size", "")),
        size_limit=str(context.fact("size_limit", "")),
    )
    # Facts a mechanism adds (the NTLM domain, the Kerberos principal, the
    # OAuth error) fill placeholders of the same name.
    for key, value in context.failure.details.items():
        if key not in values and isinstance(value, str | int):
            values[key] = printable(str(value))
    return values


def best_match(
    context: Context, catalogue: tuple[Entry, ...] = CATALOGUE
) -> tuple[Entry, int]:
    """Return the most specific matching entry and its score (-1 for FALLBACK)."""
    best: Entry = FALLBACK
    best_score = -1
    for entry in catalogue:
        score = entry.score(context)
        # Strictly greater: on a tie the entry listed first wins.
        if score is not None and score > best_score:
            best, best_score = entry, score
    return best, best_score


def best_entry(context: Context, catalogue: tuple[Entry, ...] = CATALOGUE) -> Entry:
    return best_match(context, catalogue)[0]


def diagnose(context: Context, catalogue: tuple[Entry, ...] = CATALOGUE) -> Diagnosis:
    entry = best_entry(context, catalogue)
    values = _values(context)
    formatter = string.Formatter()
    failure = context.failure
    return Diagnosis(
        id=entry.id,
        step=failure.step.value,
        reply_code=failure.reply_code,
        enhanced_status=failure.enhanced_status,
        reply_text=printable_reply(failure.reply_text)
        if failure.reply_text is not None
        else None,
        error=printable(failure.error) if failure.error is not None else None,
        cause=formatter.vformat(entry.cause, (), values),
        fix=formatter.vformat(entry.fix, (), values),
        transient=entry.transient,
        setting=entry.setting,
    )


def diagnose_failure(failure: SmtpFailure, **context: Any) -> Diagnosis:
    return diagnose(Context(failure=failure, **context))


def explain(
    failure: SmtpFailure,
    settings: ConnectionSettings,
    facts: dict[str, Any] | None = None,
) -> Diagnosis:
    """Diagnose a failure of a session opened with ``settings``.

    The test email and the delivery worker both call this, so the same
    server behaviour gets the same entry whichever of them met it.
    """
    return diagnose(
        Context(
            failure=failure,
            host=settings.host,
            port=settings.port,
            security=settings.security,
            mechanism=settings.mechanism,
            login=settings.login,
            facts=dict(facts or {}),
        )
    )
