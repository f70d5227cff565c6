"""Quick extra checks after a failure that make the diagnosis precise.

They run for test emails and for the delivery worker, once per failed
session, so both explain the same server behaviour with the same entry.
Only connection, greeting and certificate failures cause network work.
"""

from __future__ import annotations

from typing import Any

from postroom.smtp.certificate import fetch_certificate, implicit_tls_answers
from postroom.smtp.errors import ErrorKind, SmtpFailure, Step
from postroom.smtp.settings import ConnectionSettings

# Seconds for each follow-up check; short, because the failure already cost
# the operator a timeout.
FOLLOWUP_TIMEOUT = 5.0


async def gather_facts(
    failure: SmtpFailure, settings: ConnectionSettings
) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    timeout = min(settings.connect_timeout, FOLLOWUP_TIMEOUT)

    silent_greeting = failure.step == Step.GREETING and failure.kind in (
        ErrorKind.TIMEOUT,
        ErrorKind.DISCONNECTED,
        ErrorKind.PROTOCOL,
    )
    if silent_greeting and settings.security != "tls":
        facts["implicit_tls_works"] = await implicit_tls_answers(
            settings.host, settings.port, timeout
        )

    if failure.kind == ErrorKind.CERTIFICATE:
        info = await fetch_certificate(
            settings.host, settings.port, settings.security, timeout
        )
        if info is not None:
            facts["certificate_names"] = info.names
            facts["certificate_expires"] = info.not_after.isoformat()
            facts["certificate"] = info.as_dict()
    return facts
