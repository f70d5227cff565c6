"""Diagnose a reply or error text that an operator pastes in.

Operators often have only what another program printed: a server reply
("535 5.7.8 Username and Password not accepted"), a library's exception
("(550, b'5.7.60 SMTP; Client does not have permissions ...')") or a
Windows transport error ("... The transport error code was 0x80040217").
This module finds the SMTP reply in such text, guesses the client-side
error kind when there is no reply, and runs the same catalogue as a test
email. The failed step is usually unknown; when an entry only applies to
some steps, the first step it matches is reported as the likely one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from postroom.diagnosis.catalogue import CATALOGUE
from postroom.diagnosis.engine import Diagnosis, best_match, diagnose
from postroom.diagnosis.entry import Context, Entry
from postroom.errors import InvalidInputError
from postroom.smtp.errors import ErrorKind, SmtpFailure, Step

# Longer than any reply a server sends (RFC 5321 caps a reply line at 512
# octets) but enough for a pasted stack trace around it.
MAX_TEXT_LENGTH = 20_000

# A reply at the start of a line: "535 5.7.8 ..." or "535-5.7.8 ..." (the
# first line of a multi-line reply).
_LEADING_REPLY = re.compile(r"^\s*([2-5]\d\d)[ -](.*)$", re.DOTALL)
# A reply code followed by an enhanced status code anywhere in the text, as
# libraries quote it: 'got code "550", with message "550 5.7.60 SMTP; ..."'.
_EMBEDDED_REPLY = re.compile(
    r"(?<![\d.])([45]\d\d)[ -]([45]\.\d{1,3}\.\d{1,3}\b.*)", re.DOTALL
)
# Python's smtplib and aiosmtplib print (code, b'text') or (code, 'text').
_PYTHON_TUPLE = re.compile(r"\((\d{3}),\s*b?(['\"])(.*?)\2\)", re.DOTALL)
# An enhanced status code alone, as .NET's SmtpException quotes the reply
# ("The server response was: 5.7.60 SMTP; Client does not have ...").
_ENHANCED_ONLY = re.compile(r"(?<![\d.])([45]\.\d{1,3}\.\d{1,3})\b(.*)", re.DOTALL)
# The "NNN-" or "NNN " prefix that repeats on each line of a reply.
_LINE_PREFIX = re.compile(r"^\s*\d{3}[ -]", re.MULTILINE)

# Client-side errors as Python, OpenSSL, .NET, Java and Windows word them,
# checked in this order; the first match sets the error kind.
_ERROR_KINDS: tuple[tuple[ErrorKind, re.Pattern[str]], ...] = (
    (
        ErrorKind.DNS,
        re.compile(
            r"getaddrinfo|Name or service not known|nodename nor servname|"
            r"No such host is known|Temporary failure in name resolution|"
            r"UnknownHostException|NXDOMAIN|could not resolve|does not resolve",
            re.IGNORECASE,
        ),
    ),
    (
        ErrorKind.CERTIFICATE,
        re.compile(
            r"certificate verify failed|CERTIFICATE_VERIFY_FAILED|"
            r"self.signed certificate|certificate has expired|hostname mismatch|"
            r"unable to get local issuer|certificate is not yet valid|"
            r"PKIX path|RemoteCertificateNameMismatch|RemoteCertificateChainErrors",
            re.IGNORECASE,
        ),
    ),
    (
        ErrorKind.TLS,
        re.compile(
            r"wrong.version.number|unknown.protocol|packet.length.too.long|"
            r"record.layer.failure|SSL|TLS|handshake",
            re.IGNORECASE,
        ),
    ),
    (
        ErrorKind.REFUSED,
        re.compile(
            r"Connection refused|actively refused|ECONNREFUSED|\b10061\b",
            re.IGNORECASE,
        ),
    ),
    (
        ErrorKind.TIMEOUT,
        re.compile(r"timed out|timeout|ETIMEDOUT|\b10060\b", re.IGNORECASE),
    ),
    (
        ErrorKind.DISCONNECTED,
        re.compile(
            r"unexpectedly closed|closed the connection|connection reset|"
            r"ECONNRESET|Server disconnected|connection was closed|"
            r"Unexpected EOF",
            re.IGNORECASE,
        ),
    ),
)


@dataclass(frozen=True)
class ParsedText:
    """The reply, or the client-side error kind, found in a pasted text."""

    reply_code: int | None
    reply_text: str | None
    error: str | None
    kind: ErrorKind


@dataclass(frozen=True)
class TextDiagnosis:
    """The diagnosis of a pasted text; ``step`` is None when it is unknown."""

    id: str
    matched: bool
    step: str | None
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


def _reply_lines(text: str) -> str:
    """Drop the code repeated on each line of a multi-line reply."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1:
        return "\n".join(_LINE_PREFIX.sub("", line, count=1) for line in lines)
    return lines[0] if lines else ""


def parse_text(text: str) -> ParsedText:
    """Find the SMTP reply in ``text``, or the kind of client-side error."""
    stripped = text.strip()
    match = _LEADING_REPLY.match(stripped)
    if match:
        return ParsedText(
            int(match.group(1)), _reply_lines(match.group(2)), None, ErrorKind.REPLY
        )
    match = _PYTHON_TUPLE.search(stripped)
    if match and match.group(1)[0] in "45":
        body = match.group(3).replace("\\n", "\n")
        return ParsedText(
            int(match.group(1)), _reply_lines(body), None, ErrorKind.REPLY
        )
    match = _EMBEDDED_REPLY.search(stripped)
    if match:
        return ParsedText(
            int(match.group(1)), _reply_lines(match.group(2)), None, ErrorKind.REPLY
        )
    match = _ENHANCED_ONLY.search(stripped)
    if match:
        body = match.group(1) + match.group(2)
        return ParsedText(None, _reply_lines(body), None, ErrorKind.REPLY)
    for kind, kind_pattern in _ERROR_KINDS:
        if kind_pattern.search(stripped):
            return ParsedText(None, None, stripped, kind)
    # No reply and no known error: only entries that match on text alone
    # (such as the Windows CDO codes) can explain it.
    return ParsedText(None, None, stripped, ErrorKind.REPLY)


def _needs_step(entry: Entry) -> bool:
    """Tell whether an entry matches on little more than the step.

    "554" during the greeting and "554" after DATA mean different things.
    Without a known step such an entry would guess one, so a pasted reply
    gets a step-free entry instead.
    """
    return entry.steps is not None and not (
        entry.kinds or entry.reply_codes or entry.enhanced or entry.text or entry.when
    )


_STEP_FREE_CATALOGUE = tuple(entry for entry in CATALOGUE if not _needs_step(entry))


def _check(text: str) -> str:
    if not text or not text.strip():
        raise InvalidInputError(
            "is required: paste the server's reply or the error message",
            field="text",
        )
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidInputError(
            f"must be at most {MAX_TEXT_LENGTH} characters, got {len(text)}; "
            "paste only the lines with the error",
            field="text",
        )
    return text


def diagnose_text(
    text: str,
    *,
    step: Step | None = None,
    host: str | None = None,
    port: int | None = None,
    security: str | None = None,
    mechanism: str | None = None,
) -> TextDiagnosis:
    """Explain a pasted reply or error with the catalogue.

    ``step``, ``host``, ``port``, ``security`` and ``mechanism`` sharpen the
    advice when the operator knows them. Without ``step``, every step is
    tried and the most specific match wins.
    """
    parsed = parse_text(_check(text))

    def context(candidate: Step, known: bool) -> Context:
        failure = SmtpFailure(
            step=candidate,
            kind=parsed.kind,
            reply_code=parsed.reply_code,
            reply_text=parsed.reply_text,
            error=parsed.error,
        )
        return Context(
            failure=failure,
            host=host,
            port=port,
            security=security,
            mechanism=mechanism,
            step_known=known,
        )

    if step is not None:
        chosen = context(step, known=True)
    else:
        best_step, best_score = Step.CONNECT, -2
        best_steps: frozenset[Step] | None = None
        for candidate in Step:
            entry, score = best_match(
                context(candidate, known=False), _STEP_FREE_CATALOGUE
            )
            if score > best_score:
                best_step, best_score, best_steps = candidate, score, entry.steps
        # The step is known only when the winning entry applies to that one
        # step; otherwise naming one of several would mislead.
        known = best_steps is not None and len(best_steps) == 1
        chosen = context(best_step, known=known)

    diagnosis: Diagnosis = diagnose(
        chosen, CATALOGUE if step is not None else _STEP_FREE_CATALOGUE
    )
    return TextDiagnosis(
        id=diagnosis.id,
        matched=diagnosis.id != "unknown",
        step=diagnosis.step if chosen.step_known else None,
        reply_code=diagnosis.reply_code,
        enhanced_status=diagnosis.enhanced_status,
        reply_text=diagnosis.reply_text,
        error=diagnosis.error,
        cause=diagnosis.cause,
        fix=diagnosis.fix,
        transient=diagnosis.transient,
        setting=diagnosis.setting,
    )
