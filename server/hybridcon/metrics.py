"""Prometheus metrics, one registry per application (so tests can run many apps)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


def _loop_tasks() -> int:
    # Read when /metrics is rendered, in the event loop's own thread.
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop (a test rendering the registry by hand)
        return 0


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
        self.http_connections = Gauge(
            "hybridcon_http_connections",
            "Open TCP connections to the HTTP listener (WebSockets included).",
            registry=r,
        )
        self.http_connections_closed = Counter(
            "hybridcon_http_connections_closed_total",
            "Connections the listener refused or cut, by reason.",
            ["reason"],
            registry=r,
        )
        self.ws_connections = Gauge(
            "hybridcon_ws_connections", "Open, authenticated WebSocket connections.", registry=r
        )
        # The soak benchmark (tests/bench/soak.py) watches it for leaks across faults.
        self.loop_tasks = Gauge(
            "hybridcon_event_loop_tasks", "Tasks alive in the event loop.", registry=r
        )
        self.loop_tasks.set_function(_loop_tasks)
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

        # Livestreams. Labels are stage ids from the programme, media kinds and stream
        # states: bounded series (never a viewer, a session or a publisher's address).
        self.stream_state = Gauge(
            "hybridcon_stream_state",
            "1 for each streamed stage's current state, 0 for its other states.",
            ["stage", "state"],
            registry=r,
        )
        self.stream_publisher = Gauge(
            "hybridcon_stream_publisher",
            "1 while a stage has a WHIP publisher (live, or waiting for its first media).",
            ["stage"],
            registry=r,
        )
        self.stream_bitrate = Gauge(
            "hybridcon_stream_ingest_bitrate_bps",
            "Ingest payload bits per second over the last 2 s, by kind.",
            ["stage", "kind"],
            registry=r,
        )
        self.stream_fps = Gauge(
            "hybridcon_stream_ingest_fps",
            "Ingest frames per second over the last 2 s, by kind (audio: packets).",
            ["stage", "kind"],
            registry=r,
        )
        self.stream_keyframe_interval = Gauge(
            "hybridcon_stream_keyframe_interval_seconds",
            "Media time between the ingest's last two video keyframes.",
            ["stage"],
            registry=r,
        )
        self.stream_loss = Gauge(
            "hybridcon_stream_ingest_loss_ratio",
            "Share of RTP packets lost on the way in since the previous health push.",
            ["stage"],
            registry=r,
        )
        self.stream_frames = Counter(
            "hybridcon_stream_ingest_frames_total",
            "Frames received from publishers, by kind.",
            ["stage", "kind"],
            registry=r,
        )
        self.stream_lost = Counter(
            "hybridcon_stream_ingest_packets_lost_total",
            "RTP packets lost on the way in, as the receivers count them, by kind.",
            ["stage", "kind"],
            registry=r,
        )
        self.stream_viewers = Gauge(
            "hybridcon_stream_whep_viewers",
            "WHEP viewers connected, by stage.",
            ["stage"],
            registry=r,
        )
        self.stream_publisher_sessions = Counter(
            "hybridcon_stream_publisher_sessions_total",
            "WHIP offers accepted (publisher sessions started).",
            ["stage"],
            registry=r,
        )
        self.stream_viewer_sessions = Counter(
            "hybridcon_stream_whep_sessions_total",
            "WHEP offers accepted (viewer sessions started).",
            ["stage"],
            registry=r,
        )
        self.stream_refused = Counter(
            "hybridcon_stream_offers_refused_total",
            "WHIP/WHEP offers refused by state or caps, by endpoint and reason.",
            ["stage", "endpoint", "reason"],
            registry=r,
        )
        self.stream_segments = Counter(
            "hybridcon_stream_hls_segments_total", "HLS segments written.", ["stage"], registry=r
        )
        self.stream_keyframe_requests = Counter(
            "hybridcon_stream_keyframe_requests_total",
            "Keyframe requests (PLI) forwarded to publishers, after the rate limit.",
            ["stage"],
            registry=r,
        )
        self.stream_stalls = Counter(
            "hybridcon_stream_stalls_total",
            "Publishers closed for sending no media: stalled (it stopped) or no_media "
            "(none ever came).",
            ["stage", "reason"],
            registry=r,
        )
        self.stream_interruptions = Counter(
            "hybridcon_stream_interruptions_total",
            "Times a live stage went interrupted (publisher dropped, stalled, revoked, "
            "taken over).",
            ["stage"],
            registry=r,
        )

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
