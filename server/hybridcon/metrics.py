"""Prometheus metrics, one registry per application (so tests can run many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The service's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "hybridcon_http_requests_total",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "hybridcon_http_request_seconds",
            "HTTP request handling time.",
            ["route"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.ws_connections = Gauge(
            "hybridcon_ws_connections", "Open, authenticated WebSocket connections.", registry=r
        )
        self.ws_closed = Counter(
            "hybridcon_ws_closed_total",
            "WebSocket connections closed, by close code.",
            ["code"],
            registry=r,
        )
        self.tokens_issued = Counter(
            "hybridcon_tokens_issued_total",
            "Access tokens issued, by role and path.",
            ["role", "via"],
            registry=r,
        )
        self.token_rejections = Counter(
            "hybridcon_token_rejections_total",
            "Tokens refused at verification.",
            ["reason"],
            registry=r,
        )
        self.invite_redeems = Counter(
            "hybridcon_invite_redeems_total",
            "Invite redeem attempts, by outcome.",
            ["outcome"],
            registry=r,
        )

        self.engagement_events = Counter(
            "hybridcon_engagement_events_total",
            "Engagement events by what happened to them: written, spooled, replayed, "
            "dropped, corrupt.",
            ["outcome"],
            registry=r,
        )

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
