"""The delivery worker: claim due messages, relay them, record every reply.

Three things overlap so that neither the database nor the SMTP servers wait
for the other: claiming the next batch while the last one is being sent,
sending over each profile's pooled connections at once, and recording
outcomes in group commits (``Recorder``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from postroom.clock import utcnow
from postroom.crypto import SecretKeyError
from postroom.diagnosis.engine import Diagnosis, explain
from postroom.domain.models import MessageStatus, Profile
from postroom.logs import write_pending_lines
from postroom.oauth.tokens import profile_connection_settings
from postroom.outbox import metrics, store
from postroom.outbox.dbcall import DatabaseCaller
from postroom.outbox.lane import ProfileLane
from postroom.outbox.limits import (
    ConnectionSlots,
    PostgresConnectionSlots,
    ProfileLimits,
    forget_old_usage,
)
from postroom.outbox.listen import listen_for_work
from postroom.outbox.outcome import AttemptReport, decide
from postroom.outbox.pool import ConnectionPool, SessionFactory
from postroom.outbox.recorder import Recorder
from postroom.outbox.retry import RetryPolicy
from postroom.outbox.store import ClaimedMessage, Outcome, ProfileCache
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
    MessageStatus.HELD: logging.ERROR,
}

# Seconds between closing idle connections and, hourly, old rate counts.
_MAINTENANCE_SECONDS = 1.0
_USAGE_CLEANUP_SECONDS = 3600.0
# How long an outcome waits for others to share its commit on SQLite.
_SQLITE_LINGER_SECONDS = 0.005


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _diagnoser(settings: ConnectionSettings) -> Callable[[SmtpFailure], Diagnosis]:
    """Return a diagnose function for failures of sessions opened with settings.

    Facts from the follow-up checks (whether implicit TLS answers on the
    port, whom the certificate names) travel in the failure's details: the
    lane gathers them once when a connection cannot be opened.
    """

    def run(failure: SmtpFailure) -> Diagnosis:
        return explain(failure, settings)

    return run


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        *,
        worker_id: str | None = None,
        session_factory: SessionFactory = SmtpSession.for_delivery,
    ) -> None:
        self.runtime = runtime
        self.sessions = runtime.sessions
        self.worker_id = worker_id or new_worker_id()
        self.session_factory = session_factory
        config = runtime.settings
        self.policy = RetryPolicy(
            base_seconds=config.retry_base_seconds,
            max_seconds=config.retry_max_seconds,
            max_attempts=config.max_attempts,
            max_age_seconds=config.max_message_age_seconds,
        )
        self.concurrency = asyncio.Semaphore(config.worker_concurrency)
        self.unrecorded_per_connection = config.worker_unrecorded_per_connection
        self.lanes: dict[str, ProfileLane] = {}
        self.attempts = 0
        self._stopping = False
        self._in_flight = 0
        self._wakeup = asyncio.Event()
        self._releases: set[asyncio.Task[None]] = set()
        self._recorder: Recorder | None = None
        self._slots: ConnectionSlots = ConnectionSlots()
        self._is_postgres = runtime.engine.dialect.name == "postgresql"
        self._call = DatabaseCaller(runtime.engine, runtime.sessions)
        self._profile_cache = ProfileCache()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def in_flight(self) -> int:
        """Messages claimed by this worker whose outcome is not yet stored."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Claimed messages that no sender has taken yet."""
        return sum(len(lane.pending) for lane in self.lanes.values())

    async def drain(self) -> int:
        """Deliver until nothing is due; return how many attempts were made."""
        await self._serve(asyncio.Event(), until_idle=True)
        return self.attempts

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then shut down gracefully.

        On stop, no more messages are claimed, those not yet started go back
        to the queue, and those being sent get ``shutdown_timeout_seconds``
        to finish before they are cut off and given back too.
        """
        await self._serve(stop, until_idle=False)

    async def _serve(self, stop: asyncio.Event, *, until_idle: bool) -> None:
        loop = asyncio.get_running_loop()

        def wake() -> None:
            # Called from whichever thread committed the work.
            loop.call_soon_threadsafe(self._wakeup.set)

        unsubscribe = subscribe(wake)
        listener: asyncio.Task[None] | None = None
        # A SQLite commit blocks the event loop, so fewer and larger ones
        # cost less. A PostgreSQL commit runs while the loop sends, and outcomes
        # gather meanwhile, so lingering would only delay every commit.
        self._recorder = Recorder(
            self.worker_id,
            self._call,
            linger_seconds=0.0 if self._is_postgres else _SQLITE_LINGER_SECONDS,
            on_commit=self._settled,
        )
        self._recorder.start()
        if self._is_postgres:
            database_url = self.runtime.settings.effective_database_url
            self._slots = PostgresConnectionSlots(database_url)
            if not until_idle:
                listener = asyncio.create_task(
                    listen_for_work(database_url, self._wakeup.set)
                )
        metrics.track_worker(self)
        if not until_idle:
            log.info("delivery worker started", extra={"worker": self.worker_id})
        try:
            await self._loop(stop, until_idle)
        finally:
            unsubscribe()
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            await self._shutdown()
            await self._call.close()
            if not until_idle:
                log.info("delivery worker stopped", extra={"worker": self.worker_id})
            # The loop may end before its waiting log lines are written, so
            # they are written now, before whatever runs next prints.
            write_pending_lines()

    async def _loop(self, stop: asyncio.Event, until_idle: bool) -> None:
        config = self.runtime.settings
        batch = config.worker_batch_size
        last_maintenance = time.monotonic()
        last_usage_cleanup = 0.0
        while not stop.is_set():
            # Cleared before claiming, so work committed while this round
            # runs wakes the next wait at once.
            self._wakeup.clear()
            claimed = 0
            # Only messages no sender has taken count. The senders' windows
            # bound those sent but not yet recorded, and waiting for their
            # commits before claiming more would let the senders run dry.
            waiting = self.waiting
            if waiting <= batch:
                try:
                    claimed = await self._claim(2 * batch - waiting)
                except Exception:
                    # A database outage must not end the worker: log, back off
                    # for one poll interval and try again.
                    log.exception(
                        "claiming messages failed", extra={"worker": self.worker_id}
                    )
            if claimed:
                continue
            if until_idle and self._in_flight == 0:
                return

            now = time.monotonic()
            if now - last_maintenance >= _MAINTENANCE_SECONDS:
                last_maintenance = now
                for lane in self.lanes.values():
                    lane.pool.close_expired()
            if now - last_usage_cleanup >= _USAGE_CLEANUP_SECONDS:
                last_usage_cleanup = now
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(forget_old_usage, self.sessions, utcnow())
            await self._sleep(stop, config.worker_poll_seconds)

    async def _sleep(self, stop: asyncio.Event, timeout: float) -> None:
        waiters = [
            asyncio.create_task(self._wakeup.wait()),
            asyncio.create_task(stop.wait()),
        ]
        try:
            await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _claim(self, limit: int) -> int:
        config = self.runtime.settings
        blocked = [name for name, lane in self.lanes.items() if lane.is_blocked]
        messages, profiles = await self._call.claim_due(
            self.worker_id, limit, config.lease_seconds, blocked, self._profile_cache
        )
        if not messages:
            return 0
        self._in_flight += len(messages)
        groups: dict[str, list[ClaimedMessage]] = defaultdict(list)
        for message in messages:
            groups[message.profile_name].append(message)
        for name, group in groups.items():
            lane = await self._lane(profiles[name], group)
            if lane is not None:
                lane.add(group)
        return len(messages)

    async def _lane(
        self, profile: Profile, messages: list[ClaimedMessage]
    ) -> ProfileLane | None:
        """Return the profile's lane with current settings, creating it if new."""
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
                self.sessions,
                [message.id for message in messages],
                f"the password of profile {profile.name!r} cannot be decrypted: {exc}",
            )
            self._in_flight -= len(messages)
            return None
        if await self._hold_without_oauth_token(profile, settings, messages):
            self._in_flight -= len(messages)
            return None
        limits = ProfileLimits.of(profile)
        lane = self.lanes.get(profile.name)
        if lane is None or lane.pool.profile_id != profile.id:
            if lane is not None:
                # The profile was deleted and created again under its name.
                retired = asyncio.create_task(lane.pool.close())
                self._releases.add(retired)
                retired.add_done_callback(self._releases.discard)
            pool = ConnectionPool(
                profile.name,
                profile.id,
                settings,
                limits,
                self._slots,
                self.session_factory,
            )
            lane = ProfileLane(self, profile.name, pool)
            self.lanes[profile.name] = lane
        else:
            lane.pool.update(settings, limits)
        return lane

    def finish(self, report: AttemptReport) -> asyncio.Future[None]:
        """Decide what an attempt means, log it and hand it to the recorder."""
        lane = self.lanes[report.message.profile_name]
        outcome = decide(report, _diagnoser(lane.pool.settings), self.policy, utcnow())
        self.attempts += 1
        self._log(lane.name, report, outcome)
        metrics.observe_attempt(lane.name, outcome.attempt_outcome, report.duration_ms)
        assert self._recorder is not None
        return self._recorder.submit(outcome)

    def lane_emptied(self) -> None:
        """Wake the claim loop: a lane has handed out its last waiting message.

        Commits wake it too, often enough under load, but they may be slow
        to come. A wake for every message taken lowered the benchmark's
        throughput.
        """
        self._wakeup.set()

    def hurry_recording(self) -> None:
        """Commit the outcomes handed in so far without lingering for more."""
        if self._recorder is not None:
            self._recorder.hurry()

    def give_back(
        self, messages: list[ClaimedMessage], not_before: datetime | None
    ) -> None:
        """Return claimed messages to the queue without counting an attempt."""
        if not messages:
            return
        task = asyncio.create_task(self._release(messages, not_before))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(
        self, messages: list[ClaimedMessage], not_before: datetime | None
    ) -> None:
        try:
            await asyncio.to_thread(
                store.release,
                self.sessions,
                [message.id for message in messages],
                not_before,
                self.worker_id,
            )
        except Exception as exc:
            # Their lease runs out and they become due again all the same.
            log.warning(
                "cannot give messages back to the queue; their lease will expire",
                extra={"messages": len(messages), "error": str(exc)},
            )
        finally:
            self._settled(len(messages))

    def _settled(self, count: int) -> None:
        self._in_flight -= count
        self._wakeup.set()

    async def _shutdown(self) -> None:
        self._stopping = True
        for lane in self.lanes.values():
            self.give_back(lane.take_pending(), None)
        senders = [task for lane in self.lanes.values() for task in lane.senders]
        if senders:
            _done, late = await asyncio.wait(
                senders, timeout=self.runtime.settings.shutdown_timeout_seconds
            )
            if late:
                log.warning(
                    "shutdown deadline reached; giving unfinished messages back",
                    extra={"worker": self.worker_id, "messages": len(late)},
                )
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        # A sender that found no free connection slot may have put its
        # message back after the first round.
        for lane in self.lanes.values():
            self.give_back(lane.take_pending(), None)
        if self._recorder is not None:
            try:
                await asyncio.wait_for(
                    self._recorder.close(),
                    timeout=max(self.runtime.settings.shutdown_timeout_seconds, 5.0),
                )
            except TimeoutError:
                # The database is unreachable: these messages stay claimed
                # until their lease runs out, and are then sent again.
                log.error(
                    "cannot record delivery outcomes before exiting; their "
                    "messages will be sent again when their lease expires",
                    extra={"worker": self.worker_id},
                )
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        for lane in self.lanes.values():
            await lane.pool.close()
        await self._slots.close()
        metrics.forget_worker(self)

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
