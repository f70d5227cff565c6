"""Prometheus metrics of the outbox.

Two kinds, because several worker processes can share one database:

- From the database, the same whichever process is scraped: messages by
  profile and status, and the age of the oldest due message.
- From this process only: delivery attempts and their latency, and the
  pooled SMTP connections of the workers running here.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from postroom.clock import utcnow
from postroom.domain.models import MessageStatus, OutboxMessage

if TYPE_CHECKING:
    from postroom.outbox.worker import Worker

PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)

ATTEMPTS = Counter(
    "postroom_delivery_attempts",
    "Delivery attempts made by this process, by profile and outcome "
    "(sent, partially_sent, deferred, failed).",
    ["profile", "outcome"],
    registry=PROCESS_REGISTRY,
)
ATTEMPT_SECONDS = Histogram(
    "postroom_delivery_attempt_seconds",
    "Time from taking a message to the server's last reply, in this process.",
    ["profile"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=PROCESS_REGISTRY,
)

_workers: weakref.WeakSet[Worker] = weakref.WeakSet()


# The labelled series of each profile and outcome: labels() looks them up
# under a lock on every call, once per attempt.
_attempt_series: dict[tuple[str, str], tuple[Any, Any]] = {}


def observe_attempt(profile: str, outcome: str, duration_ms: int) -> None:
    series = _attempt_series.get((profile, outcome))
    if series is None:
        series = (ATTEMPTS.labels(profile, outcome), ATTEMPT_SECONDS.labels(profile))
        _attempt_series[(profile, outcome)] = series
    count, seconds = series
    count.inc()
    seconds.observe(duration_ms / 1000)


def track_worker(worker: Worker) -> None:
    _workers.add(worker)


def forget_worker(worker: Worker) -> None:
    _workers.discard(worker)


class _PoolCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "postroom_pool_connections",
            "Open SMTP connections of the workers in this process, by profile "
            "and state (busy sending or idle in the pool).",
            labels=["profile", "state"],
        )
        totals: dict[tuple[str, str], int] = {}
        for worker in list(_workers):
            for name, lane in list(worker.lanes.items()):
                pool = lane.pool
                busy = pool.open_count - pool.idle_count
                totals[(name, "busy")] = totals.get((name, "busy"), 0) + busy
                totals[(name, "idle")] = totals.get((name, "idle"), 0) + pool.idle_count
        for (name, state), value in sorted(totals.items()):
            gauge.add_metric([name, state], value)
        yield gauge

        in_flight = GaugeMetricFamily(
            "postroom_worker_in_flight_messages",
            "Messages claimed by the workers in this process and not yet recorded.",
        )
        in_flight.add_metric([], sum(worker.in_flight for worker in list(_workers)))
        yield in_flight


PROCESS_REGISTRY.register(_PoolCollector())


class DatabaseCollector(Collector):
    """Outbox gauges read from the database at each scrape."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        messages = GaugeMetricFamily(
            "postroom_messages",
            "Messages in the outbox by profile and status (queued, sending, "
            "held, sent, partially_sent, failed, cancelled), from the database.",
            labels=["profile", "status"],
        )
        oldest = GaugeMetricFamily(
            "postroom_oldest_due_message_age_seconds",
            "Seconds since the oldest message that is due now was queued, by "
            "profile, from the database; 0 when nothing is due.",
            labels=["profile"],
        )
        now = utcnow()
        with self._sessions() as session:
            counts = session.execute(
                select(
                    OutboxMessage.profile_name, OutboxMessage.status, func.count()
                ).group_by(OutboxMessage.profile_name, OutboxMessage.status)
            ).all()
            due = session.execute(
                select(OutboxMessage.profile_name, func.min(OutboxMessage.created_at))
                .where(
                    OutboxMessage.status.in_(
                        [MessageStatus.QUEUED, MessageStatus.SENDING]
                    ),
                    OutboxMessage.next_attempt_at <= now,
                )
                .group_by(OutboxMessage.profile_name)
            ).all()
        profiles = sorted({row[0] for row in counts})
        seen = {(row[0], row[1]): int(row[2]) for row in counts}
        for profile in profiles:
            for status in MessageStatus:
                messages.add_metric(
                    [profile, status.value], seen.get((profile, status), 0)
                )
        oldest_by_profile = {row[0]: row[1] for row in due}
        for profile in profiles:
            created = oldest_by_profile.get(profile)
            age = (now - created).total_seconds() if created is not None else 0.0
            oldest.add_metric([profile], max(age, 0.0))
        yield messages
        yield oldest


class _ProcessCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from PROCESS_REGISTRY.collect()


def start_metrics_server(
    sessions: sessionmaker[Session], port: int, host: str = "127.0.0.1"
) -> None:
    """Serve /metrics from a background thread, for `postroom worker`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(sessions))
    registry.register(_ProcessCollector())
    start_http_server(port, addr=host, registry=registry)
