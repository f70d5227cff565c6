"""Prometheus metrics of this process, in prometheus-client's default registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OAUTH_REFRESHES = Counter(
    "postroom_oauth_refreshes_total",
    "OAuth access-token refreshes, by profile and result (ok or the provider's error).",
    ["profile", "result"],
)
OAUTH_REFRESH_ALERTS = Counter(
    "postroom_oauth_refresh_alerts_total",
    "Alerts raised because a profile's OAuth token refresh started failing; one per "
    "run of failures.",
    ["profile"],
)
OAUTH_REFRESH_FAILING = Gauge(
    "postroom_oauth_refresh_failing",
    "1 while a profile's last OAuth token refresh failed, else 0.",
    ["profile"],
)
