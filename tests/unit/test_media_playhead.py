"""Unit tests for live consumers (hybridcon.media.consumer) of a hub: the viewer's
playhead paces a late start on the cached GOP, jumps to a fresh keyframe (audio with
it), stops pacing once caught up, and asks for a fresh keyframe when the cached one is
old. The hub is fed directly with a fake clock; no peers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from fractions import Fraction

import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from hybridcon.errors import Invalid
from hybridcon.media.consumer import CAUGHT_UP, Consumer, Playhead
from hybridcon.media.hub import StageHub
from hybridcon.media.packets import MediaPacket
from support import eventually

FPS = 30
FRAME = 90000 // FPS  # video ticks per frame
OPUS = 960  # 20 ms at 48 kHz


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Idle(MediaStreamTrack):
    """A publisher's video track that sends nothing (the test feeds the hub itself)."""

    kind = "video"

    async def recv(self) -> MediaPacket:
        await asyncio.Event().wait()
        raise MediaStreamError


def video(frame: int, clock: Clock, *, key: bool = False) -> MediaPacket:
    return MediaPacket(
        "video", "h264", b"v", frame * FRAME, Fraction(1, 90000), key or frame == 0, clock.now
    )


def audio(seconds: float, clock: Clock) -> MediaPacket:
    pts = round(seconds * 48000)
    return MediaPacket("audio", "opus", b"a", pts, Fraction(1, 48000), True, clock.now)


def publish(hub: StageHub, clock: Clock, frames: range, *, keys: int = 60) -> None:
    """Feed ``frames`` of video at 30 fps (keyframe every ``keys``) with 50 fps audio,
    advancing the clock as a live publisher would."""
    for frame in frames:
        hub.feed(video(frame, clock, key=frame % keys == 0))
        if frame % 3 == 0:  # audio every 20 ms: ~one and a half per frame; close enough
            hub.feed(audio(frame / FPS, clock))
        clock.now += 1 / FPS


def drain(consumer: Consumer) -> list[MediaPacket]:
    out = []
    while (packet := consumer.get_nowait()) is not None:
        out.append(packet)
    return out


def test_a_playhead_must_run_faster_than_real_time() -> None:
    with pytest.raises(Invalid, match="faster than real time"):
        Playhead(rate=1.0)


def test_a_late_live_viewer_gets_the_cached_gop_paced_then_live() -> None:
    clock = Clock()
    hub = StageHub("s", clock=clock, fresh_keyframe_age=None)
    publish(hub, clock, range(31))  # the cached GOP: frames 0..30, one second old
    playhead = Playhead(rate=4.0)
    live = hub.consumer("video", name="whep", playhead=playhead)
    hls = hub.consumer("video", name="hls")
    assert [p.pts // FRAME for p in drain(hls)] == list(range(31))  # not live: at once

    first = drain(live)
    assert [p.pts // FRAME for p in first] == [0]  # the keyframe goes out at once
    sent = {0: clock.now}
    start = clock.now
    frame = 31
    # The publisher goes on in real time; the viewer gets 4 frames per frame time.
    while not playhead.live:
        hub.feed(video(frame, clock))
        frame += 1
        clock.now += 1 / FPS
        for packet in drain(live):
            sent[packet.pts // FRAME] = clock.now
    caught_up = clock.now - start
    # One second behind at 4x: live after 1 / (4 - 1) s, within a frame or two.
    assert 1 / 3 - 2 / FPS <= caught_up <= 1 / 3 + 2 / FPS
    assert sorted(sent) == list(range(frame))  # nothing skipped
    assert live.skipped == 0 and live.jumps == 0
    # Paced: a third of a second of media is spread over about a twelfth of a second.
    assert sent[10] - sent[0] == pytest.approx(10 / FPS / 4, abs=1.5 / FPS)
    # Live: a packet goes out as it comes, whatever its timestamp says.
    hub.feed(video(frame + 300, clock))
    assert [p.pts // FRAME for p in drain(live)] == [frame + 300]


async def test_get_waits_until_the_next_packet_is_due() -> None:
    # The real clock: get() must sleep until due, not spin and not burst.
    hub = StageHub("s", fresh_keyframe_age=None)
    loop = asyncio.get_running_loop()
    now = loop.time()
    for frame in range(13):  # 0.4 s of GOP, as if it had come in real time
        hub.feed(
            MediaPacket(
                "video", "h264", b"v", frame * FRAME, Fraction(1, 90000), frame == 0, now - 1
            )
        )
    live = hub.consumer("video", name="whep", playhead=Playhead(rate=4.0))
    started = loop.time()
    got = [await asyncio.wait_for(live.get(), 1) for _ in range(13)]
    took = loop.time() - started
    assert [p.pts // FRAME for p in got if p] == list(range(13))
    assert 0.1 - 0.02 <= took <= 0.1 + 0.08  # 12 frame times at 4x: 0.1 s


def test_a_fresh_keyframe_ends_the_catch_up_and_audio_jumps_with_it() -> None:
    clock = Clock()
    hub = StageHub("s", clock=clock, fresh_keyframe_age=None)
    publish(hub, clock, range(45))  # 1.5 s into the GOP
    playhead = Playhead(rate=3.0)
    vid = hub.consumer("video", name="whep:video", playhead=playhead)
    aud = hub.consumer("audio", name="whep:audio", playhead=playhead)
    assert drain(vid)[0].keyframe
    assert drain(aud)[0].seconds == 0.0  # audio starts with the keyframe, in sync
    clock.now += 0.1
    assert len(drain(vid)) > 0 and len(drain(aud)) > 0  # paced, still far behind

    hub.feed(video(45, clock, key=True))  # the publisher answered the keyframe request
    hub.feed(audio(45 / FPS, clock))
    assert vid.jumps == 1 and vid.skipped > 0
    got = drain(vid)
    assert [(p.pts // FRAME, p.keyframe) for p in got] == [(45, True)]
    assert playhead.live  # the keyframe is fresh: caught up at once
    # The audio it held from before the keyframe is dropped, not played late.
    assert [p.seconds for p in drain(aud)] == [1.5]
    assert aud.skipped > 0
    # Audio and video of the viewer's stream from here on are both live.
    publish(hub, clock, range(46, 50))
    assert [p.pts // FRAME for p in drain(vid)] == [46, 47, 48, 49]


def test_a_live_viewer_that_falls_behind_jumps_to_the_next_keyframe() -> None:
    clock = Clock()
    hub = StageHub("s", clock=clock, fresh_keyframe_age=None)
    live = hub.consumer("video", name="whep", playhead=Playhead())
    hls = hub.consumer("video", name="hls")
    publish(hub, clock, range(30), keys=15)  # nobody reads: half a second queued
    assert live.jumps == 1 and live.pending == 1 + 14  # from the keyframe at 15 on
    assert hls.jumps == 0 and hls.pending == 30  # others keep everything
    assert [p.pts // FRAME for p in drain(live)][:2] == [15, 16]


def test_a_new_ingest_restarts_the_timeline() -> None:
    clock = Clock()
    hub = StageHub("s", clock=clock, fresh_keyframe_age=None)
    playhead = Playhead()
    first = hub.consumer("video", name="whep", playhead=playhead)
    got = []
    for frame in range(10):  # read as it comes: live from the first packet
        publish(hub, clock, range(frame, frame + 1))
        got += drain(first)
    assert len(got) == 10 and playhead.live and playhead.moves == 1
    # The next ingest's consumer starts over at pts 0 (StageTrack makes one per ingest).
    second = Consumer(hub, "video", "whep", 10, ingest=2, playhead=playhead)
    clock.now += 1.0  # a cached GOP of the new ingest, one second old
    second._start(
        [replace(video(0, clock), arrival=clock.now - 1.0), video(1, clock)], skipping=False
    )
    assert [p.pts for p in drain(second)] == [0]  # anchored again; the next is paced
    assert not playhead.live and playhead.moves == 2


async def test_an_old_cached_keyframe_makes_a_live_viewer_ask_for_a_fresh_one() -> None:
    clock = Clock()
    hub = StageHub("s", clock=clock, keyframe_interval=1.0, fresh_keyframe_age=0.3)
    asked: list[float] = []
    await hub.attach(Idle(), request_keyframe=lambda: asked.append(clock.now))
    try:
        publish(hub, clock, range(6))  # keyframe 0.2 s old: fresh enough
        hub.consumer("video", name="whep", playhead=Playhead())
        assert asked == []
        publish(hub, clock, range(6, 12))  # 0.4 s old
        hub.consumer("video", name="hls")  # not live: starts on the cache, asks nothing
        assert asked == []
        hub.consumer("video", name="whep", playhead=Playhead())
        assert asked == [clock.now]
        # Through the hub's rate limit: a second viewer right after does not ask again.
        assert not hub.request_fresh_keyframe()
        assert hub.stats.keyframe_requests == 1 and hub.stats.keyframe_requests_limited == 1
    finally:
        await hub.detach()


def test_caught_up_means_a_fresh_packet_was_due() -> None:
    clock = Clock()
    hub = StageHub("s", clock=clock, fresh_keyframe_age=None)
    publish(hub, clock, range(3))
    playhead = Playhead(rate=2.0)
    live = hub.consumer("video", name="whep", playhead=playhead)
    clock.now += CAUGHT_UP  # the cached keyframe is now older than CAUGHT_UP
    drain(live)
    assert not playhead.live
    clock.now += 1.0
    assert len(drain(live)) == 2
    assert not playhead.live  # due, but nothing fresh was sent yet
    hub.feed(video(3, clock))
    assert len(drain(live)) == 1 and playhead.live


async def test_a_fresh_keyframe_held_back_by_the_limit_is_asked_for_when_it_allows() -> None:
    # The real clock: the deferred request runs on the event loop's timer.
    hub = StageHub("s", keyframe_interval=0.2, fresh_keyframe_age=0.05)
    asked: list[float] = []
    await hub.attach(Idle(), request_keyframe=lambda: asked.append(time.monotonic()))
    try:
        old = time.monotonic() - 1.0
        for frame in range(30):  # a cached GOP one second old
            hub.feed(
                MediaPacket(
                    "video", "h264", b"v", frame * FRAME, Fraction(1, 90000), frame == 0, old
                )
            )
        first = hub.consumer("video", name="a", playhead=Playhead())
        hub.consumer("video", name="b", playhead=Playhead())  # held back by the limit
        assert len(asked) == 1
        await eventually(lambda: len(asked) == 2, timeout=2, what="the deferred request")
        assert asked[1] - asked[0] >= 0.2 - 0.02
        # Held back again, but by the time the limit allows nobody is behind any more.
        assert not hub.request_fresh_keyframe()
        assert hub._deferred is not None
        for consumer in list(hub._consumers["video"]):
            consumer.close()
        await eventually(lambda: hub._deferred is None, timeout=2, what="the deferred call")
        assert len(asked) == 2 and first.ended
    finally:
        await hub.detach()
