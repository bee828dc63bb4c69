"""Unit tests for muting one kind of a hub for everyone (StageHub.mute, a room host's
mute): nothing of that kind reaches any viewer, old or new, while the ingest is still
drained and the hub's own readers still see it; unmuted audio resumes at once and video
at the next keyframe. The hub is fed directly with a fixed clock; no peers."""

from __future__ import annotations

from fractions import Fraction

from hybridcon.media.consumer import Consumer, Playhead
from hybridcon.media.hub import StageHub
from hybridcon.media.packets import Kind, MediaPacket


def packet(kind: Kind, n: int, *, keyframe: bool = False) -> MediaPacket:
    video = kind == "video"
    return MediaPacket(
        kind=kind,
        codec="h264" if video else "opus",
        data=f"{kind}-{n}".encode(),
        pts=n * (3000 if video else 960),
        time_base=Fraction(1, 90000 if video else 48000),
        keyframe=keyframe or not video,
        arrival=100.0 + n / 30,
    )


def viewer(hub: StageHub, kind: Kind, name: str) -> Consumer:
    """A viewer's consumer (it has a playhead; the packets' arrival keeps it live)."""
    return hub.consumer(kind, name=name, playhead=Playhead())


def drained(consumer: Consumer) -> list[bytes]:
    out = []
    while (item := consumer.get_nowait()) is not None:
        out.append(item.data)
    return out


def test_a_muted_kind_reaches_nobody_and_the_other_goes_on() -> None:
    hub = StageHub("online-1/anna", clock=lambda: 100.0)
    video, audio = viewer(hub, "video", "v"), viewer(hub, "audio", "a")
    watch = hub.consumer("audio", name="first-media")  # the hub's own reader
    hub.feed(packet("video", 0, keyframe=True))
    hub.feed(packet("audio", 0))
    assert drained(video) == [b"video-0"] and drained(audio) == [b"audio-0"]

    hub.feed(packet("audio", 1))  # queued, not yet read: muting drops it too
    hub.mute("audio", True)
    assert hub.muted("audio") and not hub.muted("video")
    hub.feed(packet("audio", 2))
    hub.feed(packet("video", 1))
    assert drained(audio) == []
    assert drained(video) == [b"video-1"]
    assert drained(watch) == [b"audio-0", b"audio-1", b"audio-2"]
    # Someone who starts watching now gets no audio either, not even the cached tail.
    late = viewer(hub, "audio", "late")
    assert drained(late) == []
    assert hub.stats.audio.packets == 3  # still drained and counted

    hub.mute("audio", False)
    hub.feed(packet("audio", 3))
    assert drained(audio) == [b"audio-3"] and drained(late) == [b"audio-3"]


def test_unmuted_video_resumes_at_the_next_keyframe() -> None:
    hub = StageHub("online-1/anna", clock=lambda: 100.0)
    video = viewer(hub, "video", "v")
    hub.feed(packet("video", 0, keyframe=True))
    drained(video)
    hub.mute("video", True)
    hub.mute("video", True)  # idempotent
    hub.feed(packet("video", 1))
    hub.feed(packet("video", 2, keyframe=True))
    assert drained(video) == []
    # A new viewer while muted is not handed the cached GOP.
    newcomer = viewer(hub, "video", "new")
    assert drained(newcomer) == []

    hub.mute("video", False)
    hub.feed(packet("video", 3))  # mid-GOP: undecodable without its keyframe
    assert drained(video) == [] and drained(newcomer) == []
    hub.feed(packet("video", 4, keyframe=True))
    hub.feed(packet("video", 5))
    assert drained(video) == [b"video-4", b"video-5"]
    assert drained(newcomer) == [b"video-4", b"video-5"]
