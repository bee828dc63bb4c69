"""Integration tests for the pass-through media path: real aiortc peers on loopback.

A client peer publishes pre-encoded H.264 + Opus (made with PyAV at test time) with
no encoder; ``accept_publisher`` feeds it into a ``StageHub`` through the seam with no
decoder; ``accept_viewer`` sends the hub's packets with no encoder to client viewers,
which decode them like a browser would. Hub-only behaviour (rate limits, ingest
lifecycle) is driven by fake tracks and a fake clock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiortc
import av
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc import rtcrtpreceiver as aiortc_receiver
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError

from hybridcon.errors import Conflict, Invalid
from hybridcon.media import passthrough
from hybridcon.media.hub import StageHub
from hybridcon.media.packets import MediaPacket
from hybridcon.media.peers import Publisher, Viewer, accept_publisher, accept_viewer
from media_fixtures import (
    ICE_ADDRESSES,
    GeneratedMedia,
    Watch,
    h264_capabilities,
    make_media,
    make_offer,
    publisher_peer,
    take_answer,
    viewer_peer,
)
from support import eventually

REPO = Path(__file__).resolve().parents[2]


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def clip(media_dir: Path) -> GeneratedMedia:
    """320x240 30 fps constrained baseline H.264 + Opus, 1 s GOP, 8 s."""
    return make_media(media_dir, seconds=8)


@dataclass
class Peers:
    """Every peer a test makes, closed at its end whatever happened."""

    clients: list[RTCPeerConnection] = field(default_factory=list)
    servers: list[Publisher | Viewer] = field(default_factory=list)
    hubs: list[StageHub] = field(default_factory=list)
    watches: list[Watch] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def hub(self, stage: str = "stage-1", **options: Any) -> StageHub:
        hub = StageHub(stage, **options)
        self.hubs.append(hub)
        return hub

    async def publish(
        self,
        hub: StageHub,
        media: GeneratedMedia,
        *,
        prefer: list[aiortc.RTCRtpCodecCapability] | None = None,
        accept: tuple[str, ...] = ("H264",),
        name: str = "publisher",
    ) -> tuple[Publisher, RTCPeerConnection]:
        pc, _player = publisher_peer(media, video_codecs=prefer)
        self.clients.append(pc)
        publisher = await accept_publisher(
            await make_offer(pc),
            hub,
            ice_servers=[],
            ice_addresses=ICE_ADDRESSES,
            video_codecs=accept,
            on_closed=lambda: self.closed.append(name),
        )
        self.servers.append(publisher)
        await take_answer(pc, publisher.answer_sdp)
        return publisher, pc

    async def view(
        self, hub: StageHub, *, target: int = 30, name: str = "viewer"
    ) -> tuple[Viewer, RTCPeerConnection, Watch]:
        pc, watch = viewer_peer(target=target)
        self.clients.append(pc)
        self.watches.append(watch)
        viewer = await accept_viewer(
            await make_offer(pc),
            hub,
            ice_servers=[],
            ice_addresses=ICE_ADDRESSES,
            on_closed=lambda: self.closed.append(name),
        )
        self.servers.append(viewer)
        await take_answer(pc, viewer.answer_sdp)
        return viewer, pc, watch

    async def close(self) -> None:
        for pc in self.clients:
            await pc.close()
        for server in self.servers:
            await server.close()
        for hub in self.hubs:
            await hub.detach()
        for watch in self.watches:
            for task in watch.tasks:
                task.cancel()
            await asyncio.gather(*watch.tasks, return_exceptions=True)


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    peers = Peers()
    try:
        yield peers
    finally:
        await peers.close()


@pytest.fixture
def decoders(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every decoder aiortc makes in this process, by MIME type (server or client)."""
    made: Counter[str] = Counter()
    real = aiortc_receiver.get_decoder

    def counting(codec: aiortc.RTCRtpCodecParameters) -> Any:
        made[codec.mimeType.lower()] += 1
        return real(codec)

    monkeypatch.setattr(aiortc_receiver, "get_decoder", counting)
    return made


def upstream_plis(pc: RTCPeerConnection) -> list[float]:
    """Record the PLIs that reach a publishing client's video sender."""
    seen: list[float] = []
    sender = next(t.sender for t in pc.getTransceivers() if t.kind == "video")
    passthrough.on_picture_loss(sender, lambda: seen.append(time.monotonic()))
    return seen


async def until_keyframes(hub: StageHub, count: int) -> None:
    await eventually(
        lambda: hub.stats.video.keyframes >= count, timeout=10, what=f"{count} keyframes"
    )


# --- the seam -----------------------------------------------------------------------------


def test_install_is_idempotent_and_checks_the_aiortc_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passthrough.install()
    passthrough.install()
    assert passthrough.installed()
    assert aiortc_receiver.decoder_worker is passthrough.packet_worker
    h264 = [c for c in h264_capabilities() if c.name == "H264"]
    profiles = {str(c.parameters["profile-level-id"]) for c in h264}
    assert profiles == {"42001f", "42e01f", "4d001f", "640c1f", "64001f"}

    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(passthrough.IncompatibleAiortc, match=r"written for aiortc 1\.16\.0"):
        passthrough.install()


# --- end to end ---------------------------------------------------------------------------


async def test_viewer_decodes_what_the_publisher_sent_and_the_server_decodes_nothing(
    peers: Peers, clip: GeneratedMedia, decoders: Counter[str]
) -> None:
    hub = peers.hub()
    started = time.monotonic()
    publisher, _ = await peers.publish(hub, clip)
    assert publisher.codecs == {"video": "h264", "audio": "opus"}
    assert all(isinstance(q, passthrough.PassthroughQueue) for q in publisher._queues.values())
    viewer, _, watch = await peers.view(hub, target=45)
    assert viewer.codecs == {"video": "h264", "audio": "opus"}

    await asyncio.wait_for(watch.frame_seen.wait(), 10)
    assert watch.first_frame_at is not None
    print(
        "\ntime to first decoded frame, viewer joining with the publisher "
        f"(publisher offer to frame): {(watch.first_frame_at - started) * 1000:.0f} ms"
    )
    await asyncio.wait_for(watch.enough.wait(), 10)
    assert watch.sizes == {(clip.width, clip.height)}
    await eventually(lambda: watch.audio_frames > 20, what="decoded audio")
    # The seam carried the frames; the only decoders are the client viewer's two.
    assert publisher.frames >= 45
    assert decoders == Counter({"video/h264": 1, "audio/opus": 1})
    # No frame took a detour through a thread: the publisher's receiver threads
    # returned at once, while the frames kept coming on the event loop.
    for receiver in publisher._receivers.values():
        thread = receiver._RTCRtpReceiver__decoder_thread  # type: ignore[attr-defined]
        assert thread is not None and not thread.is_alive()
    stats = hub.stats
    assert stats.publishing and stats.video.codec == "h264" and stats.audio.codec == "opus"
    assert stats.video.keyframes >= 1 and stats.video.lost in (None, 0)
    assert 20 <= stats.video.fps <= 40
    assert str(stats.video.profile).startswith("42")
    assert stats.video.consumers == 1 and stats.audio.consumers == 1


async def test_a_file_longer_than_10_s_publishes_audio_a_viewer_decodes(
    peers: Peers, media_dir: Path
) -> None:
    # make_media once muxed all video, then all audio: past the muxer's 10 s
    # interleaving window the first Opus packet's pts (-312 samples of pre-skip) wrapped
    # to 2**33 - 585 in the MPEG-TS file, the publisher's first RTP timestamp lay 99
    # minutes after the rest, and the viewer's audio was all dropped as behind video.
    media = make_media(media_dir, seconds=12)
    with av.open(str(media.path)) as container:
        audio = [p.pts for p in container.demux(audio=0) if p.size and p.pts is not None]
    assert audio[:2] == [0, 1800], "the file's first Opus timestamps"
    assert audio == sorted(audio)

    hub = peers.hub()
    raw = hub.consumer("audio", name="raw")  # from the ingest's first packet on
    await peers.publish(hub, media)
    viewer, _, watch = await peers.view(hub)
    first, second = await raw.get(), await raw.get()
    assert first is not None and second is not None
    assert 0 < second.seconds - first.seconds < 0.1, "the hub's audio timeline jumped"
    await eventually(lambda: watch.audio_frames > 20, what="decoded audio")
    consumer = viewer.tracks["audio"]._consumer
    assert consumer is not None and consumer.skipped == 0


async def test_a_late_viewer_starts_on_the_cached_keyframe_at_once(
    peers: Peers, clip: GeneratedMedia
) -> None:
    # Never asking for a fresh keyframe, whatever the cached one's age (that is
    # test_a_late_viewer_jumps_to_a_fresh_keyframe's case).
    hub = peers.hub(fresh_keyframe_age=None)
    await peers.publish(hub, clip)
    await until_keyframes(hub, 2)
    requests = hub.stats.keyframe_requests

    started = time.monotonic()
    _, _, watch = await peers.view(hub, target=10)
    await asyncio.wait_for(watch.frame_seen.wait(), 5)
    assert watch.first_frame_at is not None
    first_frame = watch.first_frame_at - started
    print(
        f"\ntime to first decoded frame, late viewer (offer to frame): {first_frame * 1000:.0f} ms"
    )
    assert first_frame < 1.0
    # It started from the cache: nobody had to ask the publisher for a keyframe.
    assert hub.stats.keyframe_requests == requests
    await asyncio.wait_for(watch.enough.wait(), 5)


@dataclass
class Timeline:
    """When a client viewer decoded each frame, and the frame's RTP timestamp."""

    video: list[tuple[float, int]] = field(default_factory=list)
    audio: list[tuple[float, int]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def media_seconds(self, index: int) -> float:
        """Video media time of frame ``index`` since the first frame."""
        return (self.video[index][1] - self.video[0][1]) / 90000

    def arrival(self, index: int) -> float:
        """Seconds from the first decoded frame to frame ``index``."""
        return self.video[index][0] - self.video[0][0]


async def timed_view(peers: Peers, hub: StageHub) -> tuple[Viewer, RTCPeerConnection, Timeline]:
    """A decoding client viewer that records its frames' arrival and timestamps."""
    pc = RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    timeline = Timeline()

    async def read(track: MediaStreamTrack) -> None:
        seen = timeline.video if track.kind == "video" else timeline.audio
        try:
            while True:
                frame = await track.recv()
                assert frame.pts is not None
                seen.append((time.monotonic(), frame.pts))
        except MediaStreamError:
            return

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        timeline.tasks.append(asyncio.ensure_future(read(track)))

    peers.clients.append(pc)
    viewer = await accept_viewer(
        await make_offer(pc),
        hub,
        ice_servers=[],
        ice_addresses=ICE_ADDRESSES,
        on_closed=lambda: None,
    )
    peers.servers.append(viewer)
    await take_answer(pc, viewer.answer_sdp)
    return viewer, pc, timeline


async def packets_lost(pc: RTCPeerConnection) -> int:
    report = await pc.getStats()
    return sum(getattr(s, "packetsLost", 0) for s in report.values() if s.type == "inbound-rtp")


async def test_a_late_viewer_catches_up_on_the_cached_gop_paced_and_loses_nothing(
    peers: Peers, media_dir: Path
) -> None:
    # The file publisher has no encoder and ignores keyframe requests: the viewer can
    # only catch up by the pacing (fresh keyframes are test_..._jumps_to_a_fresh_...).
    media = make_media(media_dir, seconds=10, gop_seconds=3.0)
    hub = peers.hub(fresh_keyframe_age=None)
    await peers.publish(hub, media)
    await until_keyframes(hub, 2)  # the second GOP (3 s to 6 s)
    await eventually(
        lambda: hub.stats.gop_packets >= 36, timeout=5, what="1.2 s into the cached GOP"
    )
    viewer, pc, timeline = await timed_view(peers, hub)
    playhead = viewer.tracks["video"]._playhead
    await eventually(lambda: playhead.live, timeout=5, what="the viewer live")
    await eventually(lambda: len(timeline.video) >= 100, timeout=5, what="100 frames")
    for task in timeline.tasks:
        task.cancel()

    # It started on the cached keyframe 1.2-1.5 s behind; at 4x it is live after a
    # third of that. Unpaced, the cached GOP would arrive within a few milliseconds.
    rate = playhead.rate
    catch_up = next(i for i in range(1, len(timeline.video)) if timeline.media_seconds(i) >= 1.2)
    # 1.2 s of media took about 1.2 / 4 s: paced, neither a burst nor real time.
    assert 1.2 / rate * 0.7 <= timeline.arrival(catch_up) <= 1.2 / rate + 0.25
    # No frame lost or skipped: consecutive timestamps, one frame apart.
    steps = {b[1] - a[1] for a, b in itertools.pairwise(timeline.video)}
    assert steps == {90000 // media.fps}
    assert await packets_lost(pc) == 0
    assert hub.stats.video.skipped == 0
    # Live after catching up: the last frames come at the publisher's pace.
    last = len(timeline.video) - 1
    span = timeline.arrival(last) - timeline.arrival(last - 15)
    assert span == pytest.approx(15 / media.fps, abs=0.1)
    # Audio was paced with video: both started at the keyframe's media time, and
    # whenever an audio frame came its media time was close to the video's by then.
    assert timeline.audio
    gaps = []
    for at, pts in timeline.audio:
        shown = [i for i, (t, _) in enumerate(timeline.video) if t <= at]
        if shown:
            gaps.append((pts - timeline.audio[0][1]) / 48000 - timeline.media_seconds(shown[-1]))
    print(f"\naudio ahead of video while catching up: {min(gaps):.3f} to {max(gaps):.3f} s")
    assert max(abs(g) for g in gaps) < 0.2


async def test_a_late_viewer_jumps_to_a_fresh_keyframe(peers: Peers, clip: GeneratedMedia) -> None:
    # A publisher that encodes (aiortc's H.264 encoder, on the client side) answers
    # keyframe requests as a browser does; its GOP is libx264's default, 250 frames.
    hub = peers.hub(fresh_keyframe_age=0.3)
    pc = RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    player = MediaPlayer(str(clip.path))
    assert player.video is not None and player.audio is not None
    pc.addTransceiver(player.video, direction="sendonly")
    pc.addTransceiver(player.audio, direction="sendonly")
    peers.clients.append(pc)
    publisher = await accept_publisher(
        await make_offer(pc),
        hub,
        ice_servers=[],
        ice_addresses=ICE_ADDRESSES,
        on_closed=lambda: None,
    )
    peers.servers.append(publisher)
    await take_answer(pc, publisher.answer_sdp)
    await eventually(
        lambda: hub.stats.gop_packets >= 30, timeout=10, what="a cached GOP over a second old"
    )
    keyframes = hub.stats.video.keyframes

    viewer, _, timeline = await timed_view(peers, hub)
    await eventually(lambda: hub.stats.video.keyframes > keyframes, what="a fresh keyframe")
    await eventually(lambda: len(timeline.video) >= 20, what="20 frames")
    for task in timeline.tasks:
        task.cancel()

    assert hub.stats.keyframe_requests >= 1
    consumer = viewer.tracks["video"]._consumer
    assert consumer is not None and consumer.jumps == 1
    # The viewer started on the old keyframe, then jumped over the rest of its GOP.
    jump = next(
        i
        for i in range(1, len(timeline.video))
        if timeline.media_seconds(i) - timeline.media_seconds(i - 1) > 0.5
    )
    assert timeline.arrival(jump) < 0.3  # live within a fraction of the GOP's age
    assert timeline.media_seconds(jump) - timeline.arrival(jump) >= 0.7
    # The audio before the jump was dropped, not played late.
    audio_consumer = viewer.tracks["audio"]._consumer
    assert audio_consumer is not None and audio_consumer.skipped > 0


async def test_a_consumer_that_does_not_read_skips_to_a_keyframe_and_no_one_else_notices(
    peers: Peers, clip: GeneratedMedia
) -> None:
    hub = peers.hub()
    _, client = await peers.publish(hub, clip)
    plis = upstream_plis(client)
    await until_keyframes(hub, 1)
    slow = hub.consumer("video", name="slow", max_packets=10)
    fast = hub.consumer("video", name="fast")
    got: list[MediaPacket] = []

    async def read() -> None:
        while (packet := await fast.get()) is not None:
            got.append(packet)

    reader = asyncio.create_task(read())
    try:
        await eventually(lambda: slow.skipped > 0, timeout=10, what="the slow consumer skipping")
        first = await asyncio.wait_for(slow.get(), 5)
        assert first is not None and first.keyframe
        # The hub asked the publisher for a keyframe; the PLI reached it.
        await eventually(lambda: len(plis) >= 1, what="a PLI at the publisher")
        assert hub.stats.keyframe_requests >= 1
        # The reader missed nothing: it started on the cached keyframe, every frame since.
        assert fast.skipped == 0 and got[0].keyframe
        steps = {b.pts - a.pts for a, b in itertools.pairwise(got)}
        assert steps == {90000 // clip.fps}
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        slow.close()
        fast.close()
    assert hub.stats.video.skipped == slow.skipped


async def test_viewer_plis_reach_the_publisher_rate_limited(
    peers: Peers, clip: GeneratedMedia
) -> None:
    hub = peers.hub(keyframe_interval=30.0)
    _, client = await peers.publish(hub, clip)
    plis = upstream_plis(client)
    await until_keyframes(hub, 1)
    _, viewer_client, watch = await peers.view(hub, target=5)
    await asyncio.wait_for(watch.enough.wait(), 5)
    before = hub.stats

    receiver = next(t.receiver for t in viewer_client.getTransceivers() if t.kind == "video")
    for _ in range(5):
        assert await passthrough.request_picture(receiver)
    await eventually(
        lambda: (
            hub.stats.keyframe_requests + hub.stats.keyframe_requests_limited
            >= before.keyframe_requests + before.keyframe_requests_limited + 5
        ),
        what="the viewer's PLIs at the hub",
    )
    await eventually(lambda: len(plis) >= 1, what="a PLI at the publisher")
    assert hub.stats.keyframe_requests - before.keyframe_requests <= 1
    assert len(plis) <= 1


async def test_publisher_leaving_ends_consumers_and_the_next_one_plays_on(
    peers: Peers, clip: GeneratedMedia
) -> None:
    hub = peers.hub()
    _, client = await peers.publish(hub, clip)
    consumer = hub.consumer("audio", name="probe")
    _, _, watch = await peers.view(hub, target=10)
    await asyncio.wait_for(watch.enough.wait(), 10)

    await client.close()

    async def drain() -> None:
        while await consumer.get() is not None:
            pass

    await asyncio.wait_for(drain(), 5)
    await eventually(lambda: peers.closed == ["publisher"], what="on_closed")
    assert not hub.publishing and hub.codecs == {}
    assert await consumer.get() is None

    # The hub takes the next publisher; the viewer, still connected, plays it.
    decoded = watch.frames
    await peers.publish(hub, clip, name="publisher-2")
    await eventually(lambda: watch.frames > decoded + 15, timeout=10, what="frames again")
    assert hub.stats.ingests == 2
    assert peers.closed == ["publisher"]


async def test_closing_a_publisher_that_never_connected_ends_the_ingest(
    peers: Peers, clip: GeneratedMedia
) -> None:
    # The client never applies the answer: ICE never comes up, no receiver thread ever
    # starts, and only Publisher.close() can end the hub's drain of its tracks.
    hub = peers.hub()
    pc, _player = publisher_peer(clip)
    peers.clients.append(pc)
    publisher = await accept_publisher(
        await make_offer(pc),
        hub,
        ice_servers=[],
        ice_addresses=ICE_ADDRESSES,
        on_closed=lambda: peers.closed.append("x"),
    )
    peers.servers.append(publisher)
    consumer = hub.consumer("video", name="probe")
    assert hub.publishing and hub.codecs == {"video": "h264", "audio": "opus"}
    await publisher.close()
    assert await asyncio.wait_for(consumer.get(), 5) is None
    assert not hub.publishing
    assert publisher.frames == 0
    assert peers.closed == []  # close() is the owner's own doing: no on_closed


@pytest.mark.parametrize("profile", ["main", "high"])
async def test_main_and_high_profile_h264_pass_through(
    peers: Peers, media_dir: Path, profile: str
) -> None:
    media = make_media(media_dir, seconds=3, profile=profile)
    prefix = {"main": "4d", "high": "64"}[profile]
    hub = peers.hub()
    publisher, _ = await peers.publish(hub, media, prefer=h264_capabilities(prefix))
    assert f"profile-level-id={prefix}" in publisher.answer_sdp
    viewer, _, watch = await peers.view(hub, target=20)
    await asyncio.wait_for(watch.enough.wait(), 10)
    assert str(hub.profile).startswith(prefix)
    assert watch.sizes == {(media.width, media.height)}
    assert f"profile-level-id={prefix}" in viewer.answer_sdp


async def test_ffmpeg_whip_profile_42401f_is_accepted(peers: Peers, clip: GeneratedMedia) -> None:
    hub = peers.hub()
    pc, _player = publisher_peer(clip)
    peers.clients.append(pc)
    offer = await make_offer(pc)
    munged = offer.replace("profile-level-id=42001f", "profile-level-id=42401f").replace(
        "profile-level-id=42e01f", "profile-level-id=42401f"
    )
    publisher = await accept_publisher(
        munged,
        hub,
        ice_servers=[],
        ice_addresses=ICE_ADDRESSES,
        on_closed=lambda: peers.closed.append("publisher"),
    )
    peers.servers.append(publisher)
    assert publisher.codecs["video"] == "h264"
    await take_answer(pc, publisher.answer_sdp)
    await eventually(lambda: hub.stats.video.packets > 10, what="video at the hub")


async def test_vp8_from_a_browser_style_publisher(peers: Peers, media_dir: Path) -> None:
    media = make_media(media_dir, seconds=3, video_codec="vp8")
    hub = peers.hub()
    caps = aiortc.RTCRtpReceiver.getCapabilities("video")
    assert caps is not None
    vp8 = [c for c in caps.codecs if c.name in ("VP8", "rtx")]
    publisher, _ = await peers.publish(hub, media, prefer=vp8, accept=("VP8", "H264"))
    assert publisher.codecs["video"] == "vp8"
    viewer, _, watch = await peers.view(hub, target=20)
    assert viewer.codecs["video"] == "vp8"
    await asyncio.wait_for(watch.enough.wait(), 10)
    assert watch.sizes == {(media.width, media.height)}
    assert hub.stats.video.keyframes >= 1


async def test_offers_that_cannot_be_taken(peers: Peers, clip: GeneratedMedia) -> None:
    hub = peers.hub()
    with pytest.raises(Invalid):
        await accept_publisher(
            "v=0\r\nnonsense",
            hub,
            ice_servers=[],
            ice_addresses=ICE_ADDRESSES,
            on_closed=lambda: None,
        )

    pc, _player = publisher_peer(clip)
    peers.clients.append(pc)
    offer = await make_offer(pc)
    with pytest.raises(Invalid, match="takes no video"):
        await accept_publisher(
            offer,
            hub,
            ice_servers=[],
            ice_addresses=ICE_ADDRESSES,
            video_codecs=(),
            on_closed=lambda: None,
        )
    h264_pc, _player = publisher_peer(clip, video_codecs=h264_capabilities())
    peers.clients.append(h264_pc)
    h264_only = await make_offer(h264_pc)
    with pytest.raises(Invalid, match="cannot accept"):  # H.264 only, to a VP8-only stage
        await accept_publisher(
            h264_only,
            hub,
            ice_servers=[],
            ice_addresses=ICE_ADDRESSES,
            video_codecs=("VP8",),
            on_closed=lambda: None,
        )
    viewer_pc, _ = viewer_peer()
    peers.clients.append(viewer_pc)
    viewer_offer = await make_offer(viewer_pc)
    with pytest.raises(Invalid, match="sendonly"):  # a viewer's offer sent to WHIP
        await accept_publisher(
            viewer_offer,
            hub,
            ice_servers=[],
            ice_addresses=ICE_ADDRESSES,
            on_closed=lambda: None,
        )
    assert not hub.publishing

    publisher = await accept_publisher(
        offer,
        hub,
        ice_servers=[],
        ice_addresses=ICE_ADDRESSES,
        on_closed=lambda: None,
    )
    peers.servers.append(publisher)
    with pytest.raises(Conflict):
        await accept_publisher(
            offer,
            hub,
            ice_servers=[],
            ice_addresses=ICE_ADDRESSES,
            on_closed=lambda: None,
        )
    with pytest.raises(Invalid, match="recvonly"):  # a publisher's offer sent to WHEP
        await accept_viewer(
            offer,
            hub,
            ice_servers=[],
            ice_addresses=ICE_ADDRESSES,
            on_closed=lambda: None,
        )


# --- the hub alone: fake tracks, fake clock -------------------------------------------------


class FakeTrack(MediaStreamTrack):
    """A track fed by the test: av.Packets, then None to end it."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[av.Packet | None] = asyncio.Queue()

    async def recv(self) -> av.Packet:
        item = await self.queue.get()
        if item is None:
            self.stop()
            raise MediaStreamError
        return item

    def put(self, pts: int, data: bytes, codec: str, clock_rate: int) -> None:
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = Fraction(1, clock_rate)
        packet.opaque = codec.lower()  # a new object per packet, as in passthrough.FrameSink
        self.queue.put_nowait(packet)


IDR = b"\x00\x00\x00\x01\x67\x42\xc0\x1f\x00\x00\x00\x01\x68\xce\x00\x00\x00\x01\x65\x88"
P_FRAME = b"\x00\x00\x00\x01\x41\x9a"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_keyframe_requests_are_rate_limited() -> None:
    clock = FakeClock()
    hub = StageHub("s", keyframe_interval=1.0, clock=clock)
    calls: list[float] = []
    assert not hub.request_keyframe()  # nothing to ask yet
    await hub.attach(FakeTrack("audio"), request_keyframe=lambda: calls.append(-1))
    assert not hub.request_keyframe()  # audio has no keyframes to ask for
    await hub.attach(FakeTrack("video"), request_keyframe=lambda: calls.append(clock.now))
    try:
        results = []
        for step in (0.0, 0.2, 0.5, 0.99, 1.0, 1.1, 1.5, 2.0, 2.5, 3.5):
            clock.now = 100.0 + step
            results.append(hub.request_keyframe())
        assert calls == [100.0, 101.0, 102.0, 103.5]
        assert results.count(True) == 4
        stats = hub.stats
        assert (stats.keyframe_requests, stats.keyframe_requests_limited) == (4, 6)
        # A video consumer with no GOP to start from asks too, through the same limit.
        clock.now = 103.6
        hub.consumer("video", name="early")
        clock.now = 104.6
        hub.consumer("video", name="later")
        assert calls == [100.0, 101.0, 102.0, 103.5, 104.6]
    finally:
        await hub.detach()


async def test_ingest_lifecycle_with_fake_tracks() -> None:
    clock = FakeClock()
    hub = StageHub("s", clock=clock)
    video, audio = FakeTrack("video"), FakeTrack("audio")
    await hub.attach(video, request_keyframe=lambda: None)
    with pytest.raises(Conflict):
        await hub.attach(FakeTrack("video"), request_keyframe=lambda: None)
    await hub.attach(audio, request_keyframe=lambda: None)
    assert hub.publishing
    early = hub.consumer("video", name="early")

    # Video first; audio arrives 0.1 s later and is placed 0.1 s later on the timeline.
    video.put(5_000, IDR, "h264", 90000)
    first = await early.get()
    assert first is not None and first.keyframe and first.pts == 0
    clock.now += 0.1
    audio.put(123_456, b"\xf8\x01", "opus", 48000)
    video.put(8_000, P_FRAME, "h264", 90000)
    second = await early.get()
    assert second is not None and second.pts == 3000 and not second.keyframe
    late_audio = hub.consumer("audio", name="late")
    packet = await late_audio.get()
    assert packet is not None and packet.pts == 4800 and packet.time_base == Fraction(1, 48000)
    assert hub.codecs == {"video": "h264", "audio": "opus"}

    late_video = hub.consumer("video", name="late")
    assert [p.pts for p in (late_video.get_nowait(), late_video.get_nowait()) if p] == [0, 3000]

    # Both tracks end: the ingest ends by itself, consumers get None.
    video.queue.put_nowait(None)
    audio.queue.put_nowait(None)
    assert await asyncio.wait_for(early.get(), 5) is None
    assert await asyncio.wait_for(late_audio.get(), 5) is None
    assert not hub.publishing and hub.codecs == {}

    # A consumer made while idle belongs to the next ingest.
    waiting = hub.consumer("video", name="waiting")
    again = FakeTrack("video")
    await hub.attach(again, request_keyframe=lambda: None)
    again.put(0, P_FRAME, "h264", 90000)  # no keyframe yet: skipped
    again.put(3000, IDR, "h264", 90000)
    packet = await asyncio.wait_for(waiting.get(), 5)
    assert packet is not None and packet.keyframe and packet.pts == 3000
    assert waiting.skipped == 1
    await hub.detach()
    assert await waiting.get() is None
    await hub.detach()  # idempotent


async def test_a_decoding_track_is_refused() -> None:
    hub = StageHub("s")

    class Decoded(MediaStreamTrack):
        kind = "video"

        async def recv(self) -> av.VideoFrame:
            return av.VideoFrame(16, 16, "yuv420p")

    consumer = hub.consumer("video", name="c")
    await hub.attach(Decoded(), request_keyframe=lambda: None)
    assert await asyncio.wait_for(consumer.get(), 5) is None
    assert not hub.publishing


# --- CPU ----------------------------------------------------------------------------------


class ClientProcess:
    """The publisher and load viewers in a child process, so that this process's CPU
    time is the server's alone."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> ClientProcess:
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'server'}{os.pathsep}{REPO / 'tests'}"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO / "tests" / "media_fixtures.py"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        if (os.cpu_count() or 1) >= 2:
            # The client on the last core; the server (this process) may use the rest.
            os.sched_setaffinity(proc.pid, {(os.cpu_count() or 2) - 1})
        return cls(proc)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()

    async def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert line, "the client process died"
        result: dict[str, Any] = json.loads(line)
        return result

    async def connect(self, command: dict[str, Any], accept: Callable[[str], Any]) -> Any:
        await self.send(command)
        server = await accept((await self.read())["offer"])
        await self.send({"answer": server.answer_sdp})
        return server

    async def stop(self) -> None:
        if self.proc.returncode is None:
            await self.send({"cmd": "quit"})
            await asyncio.wait_for(self.proc.wait(), 30)


def cpu_share(window: tuple[float, float], then: tuple[float, float]) -> float:
    """Share of one core used between two ``(process_time, monotonic)`` readings."""
    return (window[0] - then[0]) / (window[1] - then[1])


@pytest.mark.slow
async def test_server_cpu_one_720p_publisher_five_viewers(peers: Peers, media_dir: Path) -> None:
    media = make_media(media_dir, width=1280, height=720, seconds=16, bitrate=2_900_000)
    hub = peers.hub()
    client = await ClientProcess.start()
    try:

        async def publish(offer: str) -> Publisher:
            publisher = await accept_publisher(
                offer,
                hub,
                ice_servers=[],
                ice_addresses=ICE_ADDRESSES,
                on_closed=lambda: None,
            )
            peers.servers.append(publisher)
            return publisher

        async def view(offer: str) -> Viewer:
            viewer = await accept_viewer(
                offer,
                hub,
                ice_servers=[],
                ice_addresses=ICE_ADDRESSES,
                on_closed=lambda: None,
            )
            peers.servers.append(viewer)
            return viewer

        await client.connect({"cmd": "publish", "path": str(media.path)}, publish)
        await until_keyframes(hub, 2)

        async def measure(seconds: float) -> float:
            start = (time.process_time(), time.monotonic())
            await asyncio.sleep(seconds)  # a measuring window, not a wait for a condition
            return cpu_share((time.process_time(), time.monotonic()), start)

        ingest_only = await measure(3.0)
        for _ in range(5):
            await client.connect({"cmd": "view"}, view)

        async def counts() -> list[int]:
            await client.send({"cmd": "counts"})
            result: list[int] = (await client.read())["counts"]
            return result

        async def all_playing() -> bool:
            # Past the GOP burst each join starts with: measure the steady state.
            return all(c > 2 * media.gop_frames for c in await counts())

        await eventually(all_playing, timeout=10, what="five viewers playing")
        before = await counts()
        with_viewers = await measure(4.0)
        after = await counts()
        received = [b - a for a, b in zip(before, after, strict=True)]
        stats = hub.stats
        print(
            f"\nserver CPU, 720p {stats.video.bitrate_bps / 1e6:.1f} Mbit/s "
            f"{stats.video.fps:.0f} fps: ingest only {ingest_only:.1%} of a core, "
            f"with 5 viewers {with_viewers:.1%} "
            f"(~{(with_viewers - ingest_only) / 5:.1%} per viewer); "
            f"video frames per viewer in the window {received}"
        )
        assert all(c > 3 * media.fps for c in received)
        assert stats.video.skipped == 0
        assert with_viewers < 0.9  # generous: a transcoding path would need > 2 cores
    finally:
        await client.stop()
