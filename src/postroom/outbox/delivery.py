"""Hand a batch of messages for one profile to its server over one session."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from postroom.clock import utcnow
from postroom.outbox.outcome import AttemptReport
from postroom.outbox.store import ClaimedMessage
from postroom.smtp.errors import SmtpFailure
from postroom.smtp.session import SendResult, SmtpSession
from postroom.smtp.settings import ConnectionSettings

SessionFactory = Callable[[ConnectionSettings], SmtpSession]


class _Timer:
    def __init__(self) -> None:
        self.started_at: datetime = utcnow()
        self._clock = time.perf_counter()

    def report(
        self,
        message: ClaimedMessage,
        result: SendResult | None = None,
        failure: SmtpFailure | None = None,
    ) -> AttemptReport:
        return AttemptReport(
            message=message,
            started_at=self.started_at,
            duration_ms=int((time.perf_counter() - self._clock) * 1000),
            result=result,
            failure=failure,
        )


async def deliver_batch(
    settings: ConnectionSettings,
    messages: list[ClaimedMessage],
    session_factory: SessionFactory = SmtpSession,
) -> list[AttemptReport]:
    """Send each message in turn over one session, reopening it when dropped.

    When the session cannot be opened, the failure applies to this message
    and every one after it, since none of them can be sent through it.
    """
    reports: list[AttemptReport] = []
    session: SmtpSession | None = None
    try:
        for index, message in enumerate(messages):
            timer = _Timer()
            if session is None or not session.is_connected:
                session = session_factory(settings)
                try:
                    await session.open()
                except SmtpFailure as failure:
                    reports.extend(
                        timer.report(rest, failure=failure) for rest in messages[index:]
                    )
                    break
            try:
                result = await session.send(
                    message.envelope_sender,
                    [recipient.address for recipient in message.recipients],
                    message.raw,
                    smtputf8=message.smtputf8,
                )
            except SmtpFailure as failure:
                reports.append(timer.report(message, failure=failure))
                # MAIL, RCPT or DATA failed; RSET makes the session usable for
                # the next message, unless the server has hung up.
                await session.reset()
            else:
                reports.append(timer.report(message, result=result))
    finally:
        if session is not None:
            await session.close()
    return reports
