"""Send a test email through a profile and explain the outcome.

The test walks the whole dialogue a delivery walks, records a transcript
without secrets and, on failure, runs the follow-up checks that make the
diagnosis precise (for example, whether the port speaks implicit TLS).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from postroom.clock import utcnow
from postroom.diagnosis.engine import explain
from postroom.diagnosis.followup import gather_facts
from postroom.mime.build import MessageDraft, build_message
from postroom.smtp.errors import SmtpFailure, Step
from postroom.smtp.replies import parse_enhanced_status, parse_queue_id
from postroom.smtp.session import SmtpSession
from postroom.smtp.settings import ConnectionSettings
from postroom.smtp.transcript import Transcript


@dataclass
class TestEmailResult:
    __test__ = False  # not a pytest test class, despite the name

    ok: bool
    profile: str
    recipient: str
    message_id: str | None = None
    # Where and how it failed; None when ok.
    step: str | None = None
    reply_code: int | None = None
    enhanced_status: str | None = None
    reply_text: str | None = None
    diagnosis: str | None = None
    cause: str | None = None
    fix: str | None = None
    transient: bool | None = None
    setting: str | None = None
    queue_id: str | None = None
    # Milliseconds per step, in the order the steps ran.
    timings: dict[str, float] = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "profile": self.profile,
            "recipient": self.recipient,
            "message_id": self.message_id,
            "step": self.step,
            "reply_code": self.reply_code,
            "enhanced_status": self.enhanced_status,
            "reply_text": self.reply_text,
            "diagnosis": self.diagnosis,
            "cause": self.cause,
            "fix": self.fix,
            "transient": self.transient,
            "setting": self.setting,
            "queue_id": self.queue_id,
            "timings": {step: round(ms, 1) for step, ms in self.timings.items()},
            "transcript": self.transcript,
            "facts": self.facts,
        }


def _test_draft(
    profile_name: str, sender: str, recipient: str, settings: ConnectionSettings
) -> MessageDraft:
    now = utcnow().strftime("%Y-%m-%d %H:%M:%S UTC")
    text = (
        f"This is a test email from Postroom, sent through the email profile "
        f"{profile_name!r} at {now}.\n\n"
        f"Server: {settings.host}, port {settings.port}, security {settings.security}, "
        f"auth mechanism {settings.mechanism if settings.login else 'none'}.\n"
        f"Sent from host {socket.gethostname()}.\n\n"
        "If you can read this, the profile works. No reply is needed.\n"
    )
    return MessageDraft(
        sender=sender,
        to=[recipient],
        subject=f"Postroom test email: {profile_name}",
        text=text,
        headers={"X-Postroom-Test": "yes"},
    )


async def send_test_email(
    profile_name: str, settings: ConnectionSettings, sender: str, recipient: str
) -> TestEmailResult:
    """Send a short message through the profile; never raises for SMTP problems."""
    built = build_message(_test_draft(profile_name, sender, recipient, settings))
    transcript = Transcript()
    session = SmtpSession(settings, transcript)
    result = TestEmailResult(ok=False, profile=profile_name, recipient=recipient)
    result.message_id = built.message_id
    failure: SmtpFailure | None = None
    try:
        await session.open()
        sent = await session.send(
            built.envelope_sender,
            [address for address, _kind in built.recipients],
            built.raw,
            smtputf8=built.smtputf8,
        )
        if sent.data is None:
            refusal = next(iter(sent.refused.values()))
            failure = SmtpFailure.from_reply(Step.RCPT_TO, refusal)
        else:
            result.ok = True
            result.reply_code = sent.data.code
            result.reply_text = sent.data.text
            result.enhanced_status = parse_enhanced_status(sent.data.text)
            result.queue_id = parse_queue_id(sent.data.text)
    except SmtpFailure as exc:
        failure = exc
    finally:
        await session.close()

    result.timings = dict(session.timings)
    if failure is not None:
        facts = await gather_facts(failure, settings)
        diagnosis = explain(failure, settings, facts)
        result.step = diagnosis.step
        result.reply_code = diagnosis.reply_code
        result.enhanced_status = diagnosis.enhanced_status
        result.reply_text = diagnosis.reply_text or diagnosis.error
        result.diagnosis = diagnosis.id
        result.cause = diagnosis.cause
        result.fix = diagnosis.fix
        result.transient = diagnosis.transient
        result.setting = diagnosis.setting
        result.facts = dict(facts)
        if "offered" in failure.details:
            result.facts["offered"] = failure.details["offered"]
    result.transcript = transcript.render()
    return result
