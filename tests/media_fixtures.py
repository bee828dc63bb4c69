"""Test media made at test time with PyAV (never committed): small H.264/VP8 + Opus files,
and the aiortc client peers the media tests publish and view with.

The files come from FFmpeg's own test sources (``testsrc2``, ``sine``) through
libx264 / libvpx and libopus, so they are real encoder output with a fixed GOP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from hybridcon.media.peers import gathering_on

# Where the tests' WebRTC peers gather host candidates, and hybridcon's ice_addresses in
# tests and benchmarks: the loopback interface (127.0.0.1, ::1), which aioice alone never
# offers. Test traffic stays on loopback (tests/ice_guard.py checks it).
ICE_ADDRESSES = ("lo",)

# libx264 profile names -> the profile-level-id an SPS of that profile starts with.
H264_PROFILES = {"baseline": "42", "main": "4d", "high": "64"}


@dataclass(frozen=True)
class GeneratedMedia:
    """A generated media file and what it holds."""

    path: Path
    width: int
    height: int
    fps: int
    seconds: float
    gop_frames: int
    video_codec: str
    profile: str


def make_media(
    directory: Path,
    *,
    width: int = 320,
    height: int = 240,
    fps: int = 30,
    seconds: float = 4.0,
    gop_seconds: float = 1.0,
    video_codec: str = "h264",
    profile: str = "baseline",
    bitrate: int = 600_000,
    audio: bool = True,
) -> GeneratedMedia:
    """Encode ``seconds`` of moving test pattern (and a sine tone) into ``directory``.

    H.264 goes into MPEG-TS (Annex-B, which aiortc's packetizer needs), VP8 into WebM;
    Opus with either. No B-frames (WebRTC has none), closed GOPs of ``gop_seconds``.

    Args:
        directory: where to write (a pytest tmp dir).
        width: video width.
        height: video height.
        fps: frames per second.
        seconds: duration.
        gop_seconds: keyframe interval.
        video_codec: ``"h264"`` or ``"vp8"``.
        profile: libx264 profile (``baseline``, ``main``, ``high``).
        bitrate: video bits per second.
        audio: whether to add an Opus track.

    Returns:
        The file and its parameters.
    """
    gop = max(1, round(fps * gop_seconds))
    suffix = "ts" if video_codec == "h264" else "webm"
    path = directory / f"{video_codec}-{profile}-{width}x{height}-{fps}-{seconds:g}s.{suffix}"
    if path.exists():
        return GeneratedMedia(path, width, height, fps, seconds, gop, video_codec, profile)
    out = av.open(str(path), "w", format="mpegts" if suffix == "ts" else "webm")
    if video_codec == "h264":
        options = {
            # x264 writes the lowest profile its tools need: "ultrafast" would give
            # constrained baseline whatever the profile asked for.
            "preset": "ultrafast" if profile == "baseline" else "veryfast",
            "tune": "zerolatency",
            "profile": profile,
            "bf": "0",
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
        }
        video = out.add_stream("libx264", rate=fps, options=options)
    else:
        options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "g": str(gop),
            "keyint_min": str(gop),
            "auto-alt-ref": "0",
            "lag-in-frames": "0",
        }
        video = out.add_stream("libvpx", rate=fps, options=options)
    video.width = width
    video.height = height
    video.pix_fmt = "yuv420p"
    video.bit_rate = bitrate
    sound = out.add_stream("libopus", rate=48000) if audio else None
    if sound is not None:
        sound.layout = "mono"
        sound.bit_rate = 64_000

    # Both streams' packets go to the muxer in time order, as a live recorder gives them.
    # Muxed one stream after the other, the muxer's interleaving queue (it holds at most
    # max_interleave_delta, 10 s) writes video before it has seen the first Opus packet,
    # whose pts is negative (libopus's pre-skip, -312 samples): the shift that makes
    # timestamps non-negative is then fixed by video alone, and that packet's pts wraps
    # in MPEG-TS's 33 bits to 2**33 - 585. Played by aiortc's MediaPlayer(decode=False),
    # the publisher's first Opus RTP timestamp then lies 99 minutes after the rest.
    packets: list[av.Packet] = []
    source = av.open(
        f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}", format="lavfi"
    )
    for index, frame in enumerate(source.decode(video=0)):
        frame.pts = index
        frame.time_base = Fraction(1, fps)
        frame.pict_type = av.video.frame.PictureType.NONE
        packets += video.encode(frame)
    packets += video.encode(None)
    source.close()
    if sound is not None:
        tone = av.open(f"sine=frequency=440:sample_rate=48000:duration={seconds}", format="lavfi")
        for frame in tone.decode(audio=0):
            packets += sound.encode(frame)
        packets += sound.encode(None)
        tone.close()
    packets.sort(key=_decode_time)
    for packet in packets:
        out.mux(packet)
    out.close()
    return GeneratedMedia(path, width, height, fps, seconds, gop, video_codec, profile)


def _decode_time(packet: av.Packet) -> Fraction:
    """When ``packet`` is due at the decoder, in seconds (its muxing order)."""
    stamp = packet.dts if packet.dts is not None else packet.pts
    assert stamp is not None and packet.time_base is not None
    return stamp * packet.time_base


def h264_capabilities(profile_prefix: str | None = None) -> list[RTCRtpCodecCapability]:
    """aiortc's H.264 capabilities (and RTX), optionally only one profile's."""
    caps = RTCRtpReceiver.getCapabilities("video")
    assert caps is not None
    return [
        c
        for c in caps.codecs
        if c.name == "rtx"
        or (
            c.name == "H264"
            and (
                profile_prefix is None
                or str(c.parameters.get("profile-level-id", "")).startswith(profile_prefix)
            )
        )
    ]


async def make_offer(pc: RTCPeerConnection, addresses: Sequence[str] = ICE_ADDRESSES) -> str:
    """``pc``'s complete offer (aiortc gathers every candidate before it returns), its host
    candidates on ``addresses``: loopback, like hybridcon's in the tests."""
    with gathering_on(addresses):
        await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def take_answer(pc: RTCPeerConnection, answer_sdp: str) -> None:
    """Apply the server's answer to ``pc``."""
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))


def publisher_peer(
    media: GeneratedMedia, *, video_codecs: list[RTCRtpCodecCapability] | None = None
) -> tuple[RTCPeerConnection, MediaPlayer]:
    """A client peer that publishes ``media``'s packets as they are (no encoder)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    player = MediaPlayer(str(media.path), decode=False)
    if player.video is not None:
        transceiver = pc.addTransceiver(player.video, direction="sendonly")
        if video_codecs is not None:
            transceiver.setCodecPreferences(video_codecs)
    if player.audio is not None:
        pc.addTransceiver(player.audio, direction="sendonly")
    return pc, player


@dataclass
class Watch:
    """What a client viewer decoded."""

    frames: int = 0
    audio_frames: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)
    first_frame_at: float | None = None
    frame_seen: asyncio.Event = field(default_factory=asyncio.Event)
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    target: int = 30
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def viewer_peer(*, decode: bool = True, target: int = 30) -> tuple[RTCPeerConnection, Watch]:
    """A client viewer (recvonly audio + video) that decodes, as a browser would.

    With ``decode=False`` its tracks are still read (so nothing piles up) but it counts
    what arrives instead of looking at pixels: the cheap load viewer for CPU figures.
    """
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    watch = Watch(target=target)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if not decode:
            # Emitted inside setRemoteDescription(), before the receiver starts.
            from hybridcon.media import passthrough

            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            passthrough.pass_through(receiver)
        watch.tasks.append(asyncio.ensure_future(_read(track, watch)))

    return pc, watch


async def _read(track: MediaStreamTrack, watch: Watch) -> None:
    try:
        while True:
            item = await track.recv()
            if track.kind == "audio":
                watch.audio_frames += 1
                continue
            if watch.first_frame_at is None:
                watch.first_frame_at = time.monotonic()
                watch.frame_seen.set()
            watch.frames += 1
            if isinstance(item, av.VideoFrame):
                watch.sizes.add((item.width, item.height))
            if watch.frames >= watch.target:
                watch.enough.set()
    except MediaStreamError:
        return


# --- a client process, for CPU figures of the server alone --------------------------------


async def _client_main() -> None:
    """Publisher and load viewers in their own process, driven by JSON lines on stdin.

    Commands: ``{"cmd": "publish", "path": ...}`` and ``{"cmd": "view"}`` print
    ``{"offer": sdp}`` and read ``{"answer": sdp}``; ``{"cmd": "counts"}`` prints
    ``{"counts": [...]}`` (packets each viewer received); ``{"cmd": "quit"}`` closes all.
    Viewers do not decode (a browser would; here that would only burn this box's cores).
    """
    import json
    import sys

    import structlog

    from hybridcon.media import passthrough

    # stdout carries the protocol; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    passthrough.install()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pcs: list[RTCPeerConnection] = []
    watches: list[Watch] = []

    def say(message: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    async def exchange(pc: RTCPeerConnection) -> None:
        say({"offer": await make_offer(pc)})
        answer = json.loads(await reader.readline())["answer"]
        await take_answer(pc, answer)

    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "publish":
            media = GeneratedMedia(Path(command["path"]), 0, 0, 0, 0.0, 0, "h264", "baseline")
            pc, _player = publisher_peer(media)
            pcs.append(pc)
            await exchange(pc)
        elif command["cmd"] == "view":
            pc, watch = viewer_peer(decode=False)
            pcs.append(pc)
            watches.append(watch)
            await exchange(pc)
        elif command["cmd"] == "counts":
            say({"counts": [w.frames for w in watches]})
        elif command["cmd"] == "quit":
            break
    for pc in pcs:
        await pc.close()
    say({"bye": True})


if __name__ == "__main__":
    asyncio.run(_client_main())
