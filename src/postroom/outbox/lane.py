"""One profile's share of a worker: its claimed messages, senders and pool.

Each sender task holds one pooled connection and sends the lane's messages
over it one after another; up to the profile's connection limit of senders
run at once. A sender lets the server accept a message (the final "." of
DATA) only while fewer than ``unrecorded_per_connection`` of its earlier
messages wait to be committed, so a worker that dies leaves at most that
many accepted but unrecorded messages per sender, which are sent again with
the same Message-ID. With 1, a sender waits for each outcome's commit
before the next message is accepted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from postroom.clock import utcnow
from postroom.diagnosis.followup import gather_facts
from postroom.outbox.limits import Grant, ProfileLimits, reserve_sends
from postroom.outbox.outcome import AttemptPart, AttemptReport
from postroom.outbox.pool import ConnectionPool, NoFreeSlot, PooledConnection
from postroom.outbox.store import ClaimedMessage, ClaimedRecipient
from postroom.smtp.errors import ErrorKind, SmtpFailure, Step
from postroom.smtp.session import MailTransaction

log = logging.getLogger("postroom.delivery")

# How long a sender waits for a connection slot that other workers hold
# before it hands its messages back to the queue for them.
SLOT_WAIT_SECONDS = 2.0
# Sends reserved from the shared rate counts at once, at most.
RESERVE_AT_ONCE = 50


class LaneHost(Protocol):
    """The worker's state and callbacks that a lane uses."""

    sessions: sessionmaker[Session]
    concurrency: asyncio.Semaphore
    unrecorded_per_connection: int

    @property
    def stopping(self) -> bool: ...

    def finish(self, report: AttemptReport) -> asyncio.Future[None]: ...

    def hurry_recording(self) -> None: ...

    def lane_emptied(self) -> None: ...

    def give_back(
        self, messages: list[ClaimedMessage], not_before: datetime | None
    ) -> None: ...


@dataclass
class _Tokens:
    count: int = 0
    expires_at: datetime | None = None


def split_recipients(
    recipients: list[ClaimedRecipient], limit: int | None
) -> list[list[ClaimedRecipient]]:
    """Split the envelope recipients into transactions of at most ``limit``."""
    if not limit or len(recipients) <= limit:
        return [recipients]
    return [recipients[i : i + limit] for i in range(0, len(recipients), limit)]


def _closed_while_idle(failure: SmtpFailure) -> bool:
    """Tell whether the first command on a reused connection found it closed.

    Servers close idle connections on their own schedule, silently or with
    a 421; the message was not offered, so it goes out on a new connection.
    """
    if failure.step != Step.MAIL_FROM:
        return False
    if failure.reply_code is not None:
        return failure.reply_code == 421
    return failure.kind in (ErrorKind.DISCONNECTED, ErrorKind.NETWORK)


class ProfileLane:
    def __init__(self, host: LaneHost, name: str, pool: ConnectionPool) -> None:
        self.host = host
        self.name = name
        self.pool = pool
        self.pending: deque[ClaimedMessage] = deque()
        self.senders: set[asyncio.Task[None]] = set()
        # The messages each sender has taken, to give back if cancelled.
        self.in_hand: dict[asyncio.Task[None], list[ClaimedMessage]] = {}
        self.blocked_until: datetime | None = None
        self._tokens = _Tokens()
        self._token_lock = asyncio.Lock()

    @property
    def limits(self) -> ProfileLimits:
        return self.pool.limits

    @property
    def is_blocked(self) -> bool:
        return self.blocked_until is not None and self.blocked_until > utcnow()

    def add(self, messages: list[ClaimedMessage]) -> None:
        self.pending.extend(messages)
        self._spawn()

    def _spawn(self) -> None:
        wanted = min(self.limits.max_connections, len(self.pending))
        while len(self.senders) < wanted:
            task = asyncio.create_task(self._sender(), name=f"send:{self.name}")
            self.senders.add(task)
            task.add_done_callback(self._sender_done)

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        self.senders.discard(task)
        messages = self.in_hand.pop(task, [])
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "sender failed unexpectedly",
                exc_info=task.exception(),
                extra={"profile": self.name},
            )
        if messages:
            # Cancelled at shutdown or failed before a report: the messages
            # go back to the queue with no attempt counted.
            self.host.give_back(messages, None)
        if self.pending and not self.host.stopping and not self.is_blocked:
            self._spawn()

    def take_pending(self) -> list[ClaimedMessage]:
        taken = list(self.pending)
        self.pending.clear()
        return taken

    def _block(self, until: datetime) -> None:
        self.blocked_until = until
        self.host.give_back(self.take_pending(), until)

    async def _sender(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        async with self.host.concurrency:
            connection: PooledConnection | None = None
            # Commits of this sender's outcomes not known to be done, oldest first.
            unrecorded: deque[asyncio.Future[None]] = deque()
            # Taken and checked while the last message was sent, and perhaps
            # announced on its connection.
            ahead: ClaimedMessage | None = None
            finished = False
            try:
                while not self.host.stopping:
                    message = ahead if ahead is not None else await self._take()
                    if ahead is not None and _too_late(ahead):
                        # Taken a whole delivery ago: its lease may now be too
                        # short. A connection that announced it cannot be reused.
                        self.in_hand.pop(task, None)
                        self.host.give_back([ahead], None)
                        if (
                            connection is not None
                            and connection.session.announced is not None
                        ):
                            self.pool.release(connection, reusable=False)
                            connection = None
                        ahead = None
                        continue
                    ahead = None
                    if message is None:
                        break
                    self.in_hand[task] = [message]
                    while unrecorded and unrecorded[0].done():
                        unrecorded.popleft()
                    window = self.host.unrecorded_per_connection
                    # Outcomes are committed in the order they were handed in,
                    # so once this one is done, every older one is too.
                    gate = unrecorded[-window] if len(unrecorded) >= window else None
                    if gate is not None and not gate.done():
                        self.host.hurry_recording()
                    following = await self._take_following()
                    if following is not None:
                        self.in_hand[task].append(following)
                    report, connection = await self._deliver(
                        message, connection, gate, following
                    )
                    self.in_hand.pop(task, None)
                    if report is None:
                        # No connection slot is free: other workers use them all.
                        self.pending.extendleft(
                            [following, message] if following else [message]
                        )
                        if not any(self.in_hand.values()):
                            self._block(utcnow() + timedelta(seconds=1))
                        break
                    if following is not None:
                        self.in_hand[task] = [following]
                        ahead = following
                    unrecorded.append(self.host.finish(report))
                finished = True
            finally:
                if ahead is not None:
                    # Stopping: it goes back with the others not yet sent.
                    self.in_hand.pop(task, None)
                    self.pending.appendleft(ahead)
                # A sender cancelled mid-transaction leaves its connection in
                # an unknown state, so it is closed rather than reused. So is
                # one that announced a message it will not send now.
                if connection is not None:
                    self.pool.release(connection, reusable=finished)

    async def _take(self) -> ClaimedMessage | None:
        """Take the next message that may be sent now, or None.

        A message with too little of its lease left goes back to the queue.
        When the profile's rate limit is reached, the lane stops for now.
        """
        while self.pending:
            message = self.pending.popleft()
            if _too_late(message):
                self.host.give_back([message], None)
                continue
            try:
                allowed, retry_at = await self._take_tokens(message)
            except BaseException:
                self.pending.appendleft(message)
                raise
            if not allowed:
                self.pending.appendleft(message)
                self._block(retry_at or utcnow() + timedelta(seconds=1))
                return None
            if not self.pending:
                self.host.lane_emptied()
            return message
        return None

    async def _take_following(self) -> ClaimedMessage | None:
        """Take the message to send after the one about to be sent, if any."""
        if not self.pending or self.host.stopping:
            return None
        return await self._take()

    async def _take_tokens(
        self, message: ClaimedMessage
    ) -> tuple[bool, datetime | None]:
        """Take the sends this message needs from the profile's rate limits."""
        smallest = self.limits.smallest_rate
        if smallest is None:
            return True, None
        transactions = len(
            split_recipients(message.recipients, self.limits.max_recipients)
        )
        # NOTE: a message split into more transactions than the smallest rate
        # limit allows in one window is counted as that limit, or it could
        # never be sent. The provider then gets a short burst above the limit.
        needed = min(transactions, smallest)
        async with self._token_lock:
            tokens = self._tokens
            now = utcnow()
            if tokens.expires_at is not None and now >= tokens.expires_at:
                # Reserved in a window that has ended; the new window does not
                # count them, so using them now could exceed its limit.
                tokens.count = 0
            if tokens.count < needed:
                requested = max(needed, min(len(self.pending) + 1, RESERVE_AT_ONCE))
                grant: Grant = await asyncio.to_thread(
                    reserve_sends,
                    self.host.sessions,
                    self.name,
                    self.limits.rates,
                    requested,
                    now,
                )
                tokens.count += grant.granted
                tokens.expires_at = _first_window_end(self.limits, now)
                if tokens.count < needed:
                    return False, grant.retry_at
            tokens.count -= needed
            return True, None

    async def _connect(self) -> PooledConnection | None:
        """Take a pooled connection, waiting a while for a free slot."""
        deadline = time.monotonic() + SLOT_WAIT_SECONDS
        while True:
            try:
                return await self.pool.acquire()
            except NoFreeSlot:
                if time.monotonic() > deadline or self.host.stopping:
                    return None
                await asyncio.sleep(random.uniform(0.02, 0.1))

    async def _deliver(
        self,
        message: ClaimedMessage,
        connection: PooledConnection | None,
        previous: Awaitable[None] | None,
        following: ClaimedMessage | None = None,
    ) -> tuple[AttemptReport | None, PooledConnection | None]:
        """Send one message, split as the profile requires, over the pool.

        Returns no report when no connection could be had before anything
        was sent; the message then goes back to the queue, with no attempt.
        ``following`` is announced with the last transaction's final ".".
        """
        started_at = utcnow()
        clock = time.perf_counter()
        parts: list[AttemptPart] = []
        chunks = split_recipients(message.recipients, self.limits.max_recipients)
        index = 0
        retried = False
        while index < len(chunks):
            chunk = chunks[index]
            if connection is None:
                try:
                    connection = await self._connect()
                except SmtpFailure as open_failure:
                    # The checks a test email runs (does implicit TLS answer,
                    # whom does the certificate name) make the diagnosis the
                    # same as the test's; they run once per failed open.
                    facts = await gather_facts(open_failure, self.pool.settings)
                    for name, value in facts.items():
                        open_failure.details.setdefault(name, value)
                    parts.extend(
                        AttemptPart(rest, failure=open_failure)
                        for rest in chunks[index:]
                    )
                    self._fail_pending_later(open_failure)
                    break
                if connection is None:
                    if index == 0:
                        return None, None
                    no_slot = SmtpFailure(
                        step=Step.CONNECT,
                        kind=ErrorKind.NETWORK,
                        error="no connection slot became free to send the rest "
                        "of the recipients",
                    )
                    parts.extend(
                        AttemptPart(rest, failure=no_slot) for rest in chunks[index:]
                    )
                    break
            reused = connection.messages > 0
            try:
                result = await connection.session.send(
                    message.envelope_sender,
                    [recipient.address for recipient in chunk],
                    message.raw,
                    smtputf8=message.smtputf8,
                    before_end_of_data=previous,
                    then=self._announcement(following)
                    if index == len(chunks) - 1
                    else None,
                )
            except SmtpFailure as failure:
                if (
                    reused
                    and index == 0
                    and not retried
                    and _closed_while_idle(failure)
                ):
                    retried = True
                    self.pool.release(connection, reusable=False)
                    connection = None
                    continue
                parts.append(AttemptPart(chunk, failure=failure))
                # MAIL, RCPT or DATA failed; RSET makes the session usable for
                # the next message, unless the server has hung up.
                await connection.session.reset()
                if not connection.is_usable:
                    self.pool.release(connection, reusable=False)
                    connection = None
            else:
                connection.messages += 1
                parts.append(AttemptPart(chunk, result=result))
            index += 1

        report = AttemptReport(
            message=message,
            started_at=started_at,
            duration_ms=int((time.perf_counter() - clock) * 1000),
            parts=parts,
        )
        return report, connection

    def _announcement(self, following: ClaimedMessage | None) -> MailTransaction | None:
        """Return the transaction to announce for ``following``, if it has one.

        A message split into several transactions is not announced: it is
        checked here, against the limits at this moment, which may have
        changed since the message was taken.
        """
        if following is None:
            return None
        recipients = following.recipients
        if len(split_recipients(recipients, self.limits.max_recipients)) > 1:
            return None
        return MailTransaction(
            following.envelope_sender,
            tuple(recipient.address for recipient in recipients),
            following.raw,
            following.smtputf8,
        )

    def _fail_pending_later(self, failure: SmtpFailure) -> None:
        """Apply a failure to open a connection to every waiting message too.

        None of them can be sent through a server that cannot be reached, and
        trying each in turn would take a connect timeout per message.
        """
        waiting = self.take_pending()
        now = utcnow()
        for message in waiting:
            self.host.finish(
                AttemptReport(
                    message=message,
                    started_at=now,
                    duration_ms=0,
                    parts=[AttemptPart(message.recipients, failure=failure)],
                )
            )


def _too_late(message: ClaimedMessage) -> bool:
    """Tell whether too little of the message's lease is left to start sending.

    Past ``start_by``, another worker could take the message over while it
    is still being sent.
    """
    return message.start_by is not None and utcnow() > message.start_by


def _first_window_end(limits: ProfileLimits, now: datetime) -> datetime:
    if limits.per_second:
        return now.replace(microsecond=0) + timedelta(seconds=1)
    if limits.per_minute:
        return now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
