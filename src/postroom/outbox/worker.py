"""The delivery worker: claim due messages, relay them, record every reply."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from postroom.clock import utcnow
from postroom.crypto import SecretKeyError
from postroom.diagnosis.engine import Diagnosis, explain
from postroom.diagnosis.followup import gather_facts
from postroom.domain.models import MessageStatus, Profile
from postroom.oauth.tokens import profile_connection_settings
from postroom.outbox import store
from postroom.outbox.delivery import SessionFactory, deliver_batch
from postroom.outbox.outcome import AttemptReport, decide
from postroom.outbox.retry import RetryPolicy
from postroom.outbox.store import ClaimedMessage, Outcome
from postroom.outbox.wakeup import subscribe
from postroom.runtime import Runtime
from postroom.smtp.errors import SmtpFailure
from postroom.smtp.mechanisms.xoauth2 import AccessTokenError
from postroom.smtp.session import SmtpSession
from postroom.smtp.settings import ConnectionSettings

log = logging.getLogger("postroom.delivery")

_LOG_LEVELS = {
    MessageStatus.SENT: logging.INFO,
    MessageStatus.PARTIALLY_SENT: logging.WARNING,
    MessageStatus.QUEUED: logging.WARNING,
    MessageStatus.FAILED: logging.ERROR,
}


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


async def _diagnoser(
    settings: ConnectionSettings, reports: list[AttemptReport]
) -> Callable[[SmtpFailure], Diagnosis]:
    """Return a diagnose function with the facts a test email would gather.

    The follow-up checks (whether implicit TLS works on the port, whom the
    certificate names) run once per failure, not per message, because a
    session that cannot open fails every message of the batch with the same
    failure. They do network work only after connection, greeting and
    certificate failures.
    """
    facts: dict[int, dict[str, Any]] = {}
    for report in reports:
        failure = report.failure
        if failure is not None and id(failure) not in facts:
            facts[id(failure)] = await gather_facts(failure, settings)

    def run(failure: SmtpFailure) -> Diagnosis:
        return explain(failure, settings, facts.get(id(failure)))

    return run


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        *,
        worker_id: str | None = None,
        session_factory: SessionFactory = SmtpSession,
    ) -> None:
        self.runtime = runtime
        self.worker_id = worker_id or new_worker_id()
        self.session_factory = session_factory
        config = runtime.settings
        self.policy = RetryPolicy(
            base_seconds=config.retry_base_seconds,
            max_seconds=config.retry_max_seconds,
            max_attempts=config.max_attempts,
            max_age_seconds=config.max_message_age_seconds,
        )
        self._wakeup = asyncio.Event()

    async def run_once(self) -> int:
        """Claim one batch, deliver it and record the results; return its size."""
        config = self.runtime.settings
        messages, profiles = await asyncio.to_thread(
            store.claim_due,
            self.runtime.sessions,
            self.worker_id,
            config.worker_batch_size,
            config.lease_seconds,
        )
        if not messages:
            return 0

        groups: dict[str, list[ClaimedMessage]] = defaultdict(list)
        for message in messages:
            groups[message.profile_name].append(message)
        results = await asyncio.gather(
            *(
                self._deliver_group(profiles[name], group)
                for name, group in groups.items()
            )
        )
        outcomes = [outcome for group_outcomes in results for outcome in group_outcomes]
        await asyncio.to_thread(
            store.record_outcomes, self.runtime.sessions, outcomes, self.worker_id
        )
        return len(messages)

    async def _deliver_group(
        self, profile: Profile, messages: list[ClaimedMessage]
    ) -> list[Outcome]:
        try:
            settings = profile_connection_settings(
                profile, self.runtime.sessions, self.runtime.secrets
            )
        except SecretKeyError as exc:
            # Every message of the profile would fail the same way; hold them
            # until the key is fixed instead of failing them.
            log.error(
                "cannot decrypt the profile's password; holding its messages",
                extra={"profile": profile.name, "error": str(exc)},
            )
            await asyncio.to_thread(
                store.hold,
                self.runtime.sessions,
                [message.id for message in messages],
                f"the password of profile {profile.name!r} cannot be decrypted: {exc}",
            )
            return []
        if await self._hold_without_oauth_token(profile, settings, messages):
            return []
        reports = await deliver_batch(settings, messages, self.session_factory)
        now = utcnow()
        run_diagnosis = await _diagnoser(settings, reports)
        outcomes = []
        for report in reports:
            outcome = decide(report, run_diagnosis, self.policy, now)
            self._log(profile.name, report, outcome)
            outcomes.append(outcome)
        return outcomes

    async def _hold_without_oauth_token(
        self,
        profile: Profile,
        settings: ConnectionSettings,
        messages: list[ClaimedMessage],
    ) -> bool:
        """Hold the messages when the profile's OAuth grant cannot give a token.

        A revoked or expired refresh token needs an operator to reconnect
        the account. Failing the messages would lose them, so they wait and
        are released when the profile is reconnected. A transient failure
        (the token endpoint is down) goes on to a normal, retried attempt.
        """
        source = settings.mechanism_options.get("token_source")
        if source is None:
            return False
        try:
            await source.access_token()
        except AccessTokenError as exc:
            if exc.transient:
                return False
            await asyncio.to_thread(
                store.hold,
                self.runtime.sessions,
                [message.id for message in messages],
                f"the OAuth token of profile {profile.name!r} cannot be refreshed "
                f"({exc.error}); reconnect the account",
            )
            return True
        return False

    def _log(self, profile: str, report: AttemptReport, outcome: Outcome) -> None:
        level = _LOG_LEVELS.get(outcome.status, logging.ERROR)
        if not log.isEnabledFor(level):
            return
        diagnosis = outcome.diagnosis or {}
        log.log(
            level,
            "delivery attempt %s",
            outcome.attempt_outcome,
            extra={
                "profile": profile,
                "outbox_id": report.message.id,
                "message_id": report.message.message_id,
                "attempt": outcome.attempt_number,
                "outcome": outcome.attempt_outcome,
                "step": outcome.step,
                "reply_code": outcome.reply_code,
                "enhanced_status": outcome.enhanced_status,
                "duration_ms": outcome.duration_ms,
                "queue_id": outcome.provider_queue_id,
                "diagnosis": diagnosis.get("id"),
            },
        )

    async def drain(self) -> int:
        """Deliver until nothing is due; return how many attempts were made."""
        total = 0
        while True:
            count = await self.run_once()
            if count == 0:
                return total
            total += count

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, waking on new work or every poll interval."""
        loop = asyncio.get_running_loop()

        def wake() -> None:
            # Called from whichever thread committed the work.
            loop.call_soon_threadsafe(self._wakeup.set)

        unsubscribe = subscribe(wake)
        log.info("delivery worker started", extra={"worker": self.worker_id})
        try:
            while not stop.is_set():
                # Cleared before claiming, so work committed while this round
                # runs wakes the next wait at once.
                self._wakeup.clear()
                try:
                    count = await self.run_once()
                except Exception:
                    # A database outage must not end the worker: log, back off
                    # for one poll interval and try again.
                    log.exception(
                        "delivery round failed", extra={"worker": self.worker_id}
                    )
                    count = 0
                if count:
                    continue
                await self._sleep(stop)
        finally:
            unsubscribe()
            log.info("delivery worker stopped", extra={"worker": self.worker_id})

    async def _sleep(self, stop: asyncio.Event) -> None:
        waiters = [
            asyncio.create_task(self._wakeup.wait()),
            asyncio.create_task(stop.wait()),
        ]
        try:
            await asyncio.wait(
                waiters,
                timeout=self.runtime.settings.worker_poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
