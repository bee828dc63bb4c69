"""One streamed stage's Prometheus series, fed by the Streams service.

Events (sessions accepted, offers refused, segments written, stalls, interruptions,
state changes) are counted where they happen. What the stage hub measures (rates,
frames, keyframe requests, loss) is sampled by :meth:`StageMetrics.sample` once a second
from the stall watch: the hub keeps its own counters, and the series follow them.
"""

from __future__ import annotations

from prometheus_client import Counter

from hybridcon.core.streams import StreamState
from hybridcon.media.packets import KINDS, Kind
from hybridcon.media.stats import HubStats
from hybridcon.metrics import Metrics


class StageMetrics:
    """The series of one stage, created at start (so each one exists from the first scrape)."""

    def __init__(self, metrics: Metrics, stage: str) -> None:
        self._metrics = metrics
        self.stage = stage
        m = metrics
        self.publisher_sessions = m.stream_publisher_sessions.labels(stage=stage)
        self.viewer_sessions = m.stream_viewer_sessions.labels(stage=stage)
        self.segments = m.stream_segments.labels(stage=stage)
        self.interruptions = m.stream_interruptions.labels(stage=stage)
        self.loss = m.stream_loss.labels(stage=stage)
        self._publisher = m.stream_publisher.labels(stage=stage)
        self._viewers = m.stream_viewers.labels(stage=stage)
        self._keyframe_interval = m.stream_keyframe_interval.labels(stage=stage)
        self._keyframe_requests = m.stream_keyframe_requests.labels(stage=stage)
        self._stalls = {
            reason: m.stream_stalls.labels(stage=stage, reason=reason)
            for reason in ("stalled", "no_media")
        }
        self._frames = {k: m.stream_frames.labels(stage=stage, kind=k) for k in KINDS}
        self._lost = {k: m.stream_lost.labels(stage=stage, kind=k) for k in KINDS}
        self._bitrate = {k: m.stream_bitrate.labels(stage=stage, kind=k) for k in KINDS}
        self._fps = {k: m.stream_fps.labels(stage=stage, kind=k) for k in KINDS}
        # What the hub had counted at the last sample. Its frame and keyframe-request
        # counts grow over the hub's life; its loss count starts again with each ingest.
        self._seen_frames: dict[Kind, int] = dict.fromkeys(KINDS, 0)
        self._seen_requests = 0
        self._seen_lost: dict[Kind, tuple[int, int]] = dict.fromkeys(KINDS, (0, 0))
        self.state(StreamState.SCHEDULED)

    def state(self, state: StreamState) -> None:
        """Set the state gauge: 1 for ``state``, 0 for the others."""
        for each in StreamState:
            self._metrics.stream_state.labels(stage=self.stage, state=each.value).set(
                1 if each is state else 0
            )

    def stalled(self, reason: str) -> None:
        """Count a publisher closed for sending no media (``stalled`` or ``no_media``)."""
        self._stalls[reason].inc()

    def refused(self, endpoint: str, reason: str) -> None:
        """Count an offer refused: ``endpoint`` ``whip``/``whep``; ``reason`` one of
        ``has_publisher``, ``negotiating``, ``full``, ``not_live``, ``audio_only``."""
        self._metrics.stream_refused.labels(
            stage=self.stage, endpoint=endpoint, reason=reason
        ).inc()

    def sample(self, stats: HubStats, *, publisher: bool, viewers: int) -> None:
        """Bring the series in line with the hub's ``stats``.

        Args:
            stats: the stage hub's stats now.
            publisher: whether the stage has a publisher (or one being negotiated).
            viewers: its WHEP viewers.
        """
        self._publisher.set(1 if publisher else 0)
        self._viewers.set(viewers)
        interval = stats.video.last_keyframe_interval_s
        self._keyframe_interval.set(interval if stats.publishing and interval else 0)
        _advance(self._keyframe_requests, stats.keyframe_requests - self._seen_requests)
        self._seen_requests = stats.keyframe_requests
        for kind in KINDS:
            k = stats[kind]
            self._bitrate[kind].set(k.bitrate_bps if stats.publishing else 0)
            self._fps[kind].set(k.fps if stats.publishing else 0)
            _advance(self._frames[kind], k.packets - self._seen_frames[kind])
            self._seen_frames[kind] = k.packets
            if k.lost is not None:
                # The hub forgets the count at a new ingest (``ingests`` goes up).
                ingest, lost = self._seen_lost[kind]
                if ingest != stats.ingests:
                    lost = 0
                _advance(self._lost[kind], k.lost - lost)
                self._seen_lost[kind] = (stats.ingests, max(lost, k.lost))


def _advance(counter: Counter, by: int) -> None:
    # A receiver's loss count can go back (duplicates make RTCP's cumulative figure
    # fall); a Prometheus counter only goes up.
    if by > 0:
        counter.inc(by)
