"""What a stage hub measures: per-kind counters over its life and over a rolling window,
and the frozen snapshots (:class:`HubStats`) that ``stream.health`` and the metrics read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hybridcon.media.packets import Kind, MediaPacket

# Seconds of packets behind the rolling bitrate and fps.
STATS_WINDOW = 2.0


@dataclass(frozen=True, slots=True)
class KindStats:
    """One kind of the ingest, as measured by the hub.

    Attributes:
        codec: the codec of the current ingest (None when not publishing this kind).
        packets: frames received over the hub's life.
        bytes: their payload bytes.
        bitrate_bps: payload bits per second over the last :data:`STATS_WINDOW`.
        fps: frames per second over the same window (audio: packets per second).
        keyframes: keyframes received over the hub's life.
        last_keyframe_interval_s: media time between the last two keyframes.
        last_packet_age_s: seconds since the last packet (None: never any).
        lost: RTP packets lost on the way in, as the receiver counts them (if known).
        consumers: consumers of this kind now.
        skipped: packets skipped by lagging consumers over the hub's life.
        profile: H.264 ``profile-level-id`` from the in-band SPS (video, if known).
    """

    codec: str | None
    packets: int
    bytes: int
    bitrate_bps: float
    fps: float
    keyframes: int
    last_keyframe_interval_s: float | None
    last_packet_age_s: float | None
    lost: int | None
    consumers: int
    skipped: int
    profile: str | None = None

    def public(self) -> dict[str, Any]:
        """A JSON-ready dict (rounded)."""
        return {
            "codec": self.codec,
            "packets": self.packets,
            "bytes": self.bytes,
            "bitrate_bps": round(self.bitrate_bps),
            "fps": round(self.fps, 1),
            "keyframes": self.keyframes,
            "last_keyframe_interval_s": _round(self.last_keyframe_interval_s),
            "last_packet_age_s": _round(self.last_packet_age_s),
            "lost": self.lost,
            "consumers": self.consumers,
            "skipped": self.skipped,
            "profile": self.profile,
        }


@dataclass(frozen=True, slots=True)
class HubStats:
    """A snapshot of a hub's health (see :class:`KindStats`).

    Attributes:
        publishing: whether an ingest is attached.
        video: video stats.
        audio: audio stats.
        keyframe_requests: requests forwarded upstream.
        keyframe_requests_limited: requests held back by the rate limit.
        ingests: ingests attached over the hub's life.
        gop_packets: video packets in the last-GOP cache.
        gop_bytes: their bytes.
    """

    publishing: bool
    video: KindStats
    audio: KindStats
    keyframe_requests: int
    keyframe_requests_limited: int
    ingests: int
    gop_packets: int
    gop_bytes: int

    def __getitem__(self, kind: Kind) -> KindStats:
        return self.video if kind == "video" else self.audio

    def public(self) -> dict[str, Any]:
        """A JSON-ready dict for health pushes and the engagement log."""
        return {
            "publishing": self.publishing,
            "video": self.video.public(),
            "audio": self.audio.public(),
            "keyframe_requests": self.keyframe_requests,
            "keyframe_requests_limited": self.keyframe_requests_limited,
            "ingests": self.ingests,
            "gop_packets": self.gop_packets,
            "gop_bytes": self.gop_bytes,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(slots=True)
class KindCounters:
    """What the hub counts of one kind: totals over its life, and a rolling window of
    ``(arrival, bytes)`` for the bitrate and frame rate. Only the hub writes it; a
    :class:`KindStats` is the snapshot readers get."""

    packets: int = 0
    bytes: int = 0
    keyframes: int = 0
    skipped: int = 0
    lost: int | None = None
    last_arrival: float | None = None
    last_keyframe_pts: int | None = None
    last_keyframe_interval_s: float | None = None
    window: deque[tuple[float, int]] = field(default_factory=deque)
    window_start: float | None = None

    def add(self, packet: MediaPacket) -> None:
        size = len(packet.data)
        self.packets += 1
        self.bytes += size
        self.last_arrival = packet.arrival
        if self.window_start is None:
            self.window_start = packet.arrival
        self.window.append((packet.arrival, size))
        self._trim(packet.arrival)
        if packet.keyframe and packet.kind == "video":
            self.keyframes += 1
            if self.last_keyframe_pts is not None:
                interval = (packet.pts - self.last_keyframe_pts) * packet.time_base
                self.last_keyframe_interval_s = float(interval)
            self.last_keyframe_pts = packet.pts

    def _trim(self, now: float) -> None:
        while self.window and self.window[0][0] <= now - STATS_WINDOW:
            self.window.popleft()

    def rates(self, now: float) -> tuple[float, float]:
        """``(bits per second, frames per second)`` over the window ending ``now``."""
        self._trim(now)
        if not self.window or self.window_start is None:
            return 0.0, 0.0
        # A young ingest is measured over its age, not the full window (floor 0.5 s
        # so that the first packets do not read as a burst).
        span = min(STATS_WINDOW, max(0.5, now - self.window_start))
        total = sum(size for _, size in self.window)
        return total * 8 / span, len(self.window) / span

    def new_ingest(self) -> None:
        self.window.clear()
        self.window_start = None
        self.last_keyframe_pts = None
        self.lost = None
