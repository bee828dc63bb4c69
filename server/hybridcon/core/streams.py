"""A stage's stream: ``scheduled -> live -> ended``, and ``interrupted`` when a publisher drops.

Pure. The WHIP driver reports what happens to the publisher; this module says which
state follows and which engagement event and stage push that means. A publisher that
ends its session (WHIP ``DELETE``) ends the stream; one whose connection fails
interrupts it, and a new publisher makes the stage live again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class StreamState(StrEnum):
    """Where a stage's stream is."""

    SCHEDULED = "scheduled"  # nothing published yet
    LIVE = "live"
    INTERRUPTED = "interrupted"  # the publisher dropped without ending
    ENDED = "ended"  # the publisher ended the stream


class StreamEvent(StrEnum):
    """What happened to the publisher."""

    STARTED = "started"  # media arrives from a new publisher
    DROPPED = "dropped"  # the connection failed or timed out
    STOPPED = "stopped"  # the publisher ended its session


_NEXT: dict[tuple[StreamState, StreamEvent], StreamState] = {
    (StreamState.SCHEDULED, StreamEvent.STARTED): StreamState.LIVE,
    (StreamState.INTERRUPTED, StreamEvent.STARTED): StreamState.LIVE,
    (StreamState.ENDED, StreamEvent.STARTED): StreamState.LIVE,
    (StreamState.LIVE, StreamEvent.STARTED): StreamState.LIVE,  # an organiser took over
    (StreamState.LIVE, StreamEvent.DROPPED): StreamState.INTERRUPTED,
    (StreamState.LIVE, StreamEvent.STOPPED): StreamState.ENDED,
    (StreamState.INTERRUPTED, StreamEvent.STOPPED): StreamState.ENDED,
}


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change and what it means for the log."""

    before: StreamState
    after: StreamState
    at: datetime

    @property
    def engagement_kind(self) -> str | None:
        """``stream_started`` / ``stream_ended`` when the stream starts or stops being live."""
        if self.after is StreamState.LIVE and self.before is not StreamState.LIVE:
            return "stream_started"
        if self.before is StreamState.LIVE and self.after is not StreamState.LIVE:
            return "stream_ended"
        return None


def next_state(state: StreamState, event: StreamEvent, now: datetime) -> Transition | None:
    """The transition ``event`` causes in ``state`` (None: nothing changes)."""
    after = _NEXT.get((state, event))
    if after is None or (after is state and event is not StreamEvent.STARTED):
        return None
    return Transition(before=state, after=after, at=now)
