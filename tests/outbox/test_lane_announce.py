"""A profile lane announcing each next message on its connection."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from postroom.clock import utcnow
from postroom.outbox.lane import ProfileLane
from postroom.outbox.limits import ConnectionSlots, ProfileLimits
from postroom.outbox.outcome import AttemptReport
from postroom.outbox.pool import ConnectionPool
from postroom.outbox.store import ClaimedMessage, ClaimedRecipient
from postroom.smtp.session import SmtpSession
from tests.smtp.test_pipelining import MESSAGE, HoldingServer, settings


class Host:
    """The worker's side of a lane: outcomes count as committed at once."""

    def __init__(self) -> None:
        self.sessions: Any = None
        self.concurrency = asyncio.Semaphore(10)
        self.unrecorded_per_connection = 8
        self.stopping = False
        self.reports: list[AttemptReport] = []
        self.given_back: list[ClaimedMessage] = []

    def finish(self, report: AttemptReport) -> asyncio.Future[None]:
        self.reports.append(report)
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        committed.set_result(None)
        return committed

    def lane_emptied(self) -> None:
        pass

    def hurry_recording(self) -> None:
        pass

    def give_back(
        self, messages: list[ClaimedMessage], not_before: datetime | None
    ) -> None:
        self.given_back.extend(messages)


class Servers:
    """A HoldingServer per connection, made with the same settings."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.made: list[HoldingServer] = []

    def __call__(self) -> HoldingServer:
        server = HoldingServer(**self.options)
        self.made.append(server)
        return server

    def recipients_per_transaction(self) -> list[int]:
        counts = []
        for server in self.made:
            count = 0
            for command in server.commands:
                if command.line.startswith("RCPT"):
                    count += 1
                elif command.line == "DATA":
                    counts.append(count)
                    count = 0
        return counts


def claimed(
    number: int, recipients: int = 1, start_by: datetime | None = None
) -> ClaimedMessage:
    return ClaimedMessage(
        id=number,
        profile_name="Orders",
        message_id=f"<{number}@example.com>",
        envelope_sender="a@example.com",
        raw=MESSAGE.replace(b"Hello.", f"Message {number}.".encode()),
        smtputf8=False,
        attempt_count=0,
        created_at=utcnow(),
        recipients=[
            ClaimedRecipient(number * 100 + index, f"r{number}.{index}@example.com")
            for index in range(recipients)
        ],
        start_by=start_by,
    )


def run_lane(servers: Servers, messages: list[ClaimedMessage], **limits: Any) -> Host:
    async def main() -> Host:
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(servers, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        host = Host()
        pool = ConnectionPool(
            "Orders",
            1,
            settings(port),
            ProfileLimits(**{"max_connections": 1, **limits}),
            ConnectionSlots(),
            SmtpSession.for_delivery,
        )
        lane = ProfileLane(host, "Orders", pool)
        lane.add(messages)
        deadline = loop.time() + 20
        while lane.senders and loop.time() < deadline:
            await asyncio.sleep(0.02)
        await pool.close()
        listener.close()
        return host

    return asyncio.run(main())


def test_announced_message_past_start_by_goes_back() -> None:
    # Each reply takes 0.4 s, so the second message, taken while the first
    # was sent, is past its start_by when its turn comes.
    servers = Servers(hold=0.4)
    start_by = utcnow() + timedelta(seconds=1)
    first, second = claimed(1, start_by=start_by), claimed(2, start_by=start_by)

    host = run_lane(servers, [first, second])

    assert [report.message.id for report in host.reports] == [1]
    assert all(report.started_at <= start_by for report in host.reports)
    assert [message.id for message in host.given_back] == [2]
    # Its commands had gone out, but the server never got its content.
    assert [len(server.bodies) for server in servers.made] == [1]


def test_split_message_is_never_announced() -> None:
    # The message taken to follow the first is past its start_by, so the
    # lane takes the next one, which needs two transactions.
    servers = Servers(hold=0.01)
    past = utcnow() - timedelta(seconds=1)
    messages = [claimed(1), claimed(2, start_by=past), claimed(3, recipients=3)]

    host = run_lane(servers, messages, max_recipients=2)

    assert servers.recipients_per_transaction() == [1, 2, 1]
    assert len(servers.made) == 1
    assert [report.message.id for report in host.reports] == [1, 3]
    assert [message.id for message in host.given_back] == [2]


def test_rejected_message_next_sent_anew() -> None:
    servers = Servers(hold=0.01, replies={"END": ["554 5.6.0 Content rejected"]})

    host = run_lane(servers, [claimed(1), claimed(2), claimed(3)])

    failures = [
        [part.failure.reply_code if part.failure else 250 for part in report.parts]
        for report in host.reports
    ]
    assert failures == [[554], [250], [250]]
    assert host.given_back == []
    # The rejection closed the connection that carried the second message's
    # commands; it went out on a new one.
    assert len(servers.made) == 2
    assert [len(server.bodies) for server in servers.made] == [1, 2]
