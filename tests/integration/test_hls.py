"""HLS packaging and recording of real encoded media.

The input is what a hub hands out: H.264 from libx264 (constrained baseline, Annex-B
with SPS/PPS before each IDR, as WebRTC publishers send it) and Opus from libopus in
20-ms packets, wrapped as :class:`~hybridcon.media.packets.MediaPacket` with RTP-style
timestamps on one zero. The outputs are checked by opening them with PyAV.
"""

from __future__ import annotations

import asyncio
import math
import os
import pickle
import struct
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import av
import pytest

from hybridcon.media.h264 import h264_size
from hybridcon.media.hls import ARCHIVE_PLAYLIST, LIVE_PLAYLIST, HlsPackager
from hybridcon.media.packets import MediaPacket
from hybridcon.media.playlists import Segment, parse_playlist
from hybridcon.media.recorder import Recorder
from hybridcon.media.timeline import PacketMerger

FPS = 30
WIDTH, HEIGHT = 640, 360
OPUS_FRAME = 960
START = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


# --- media ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    data: bytes
    index: int  # frame number (video) or sample position (audio)
    keyframe: bool


@cache
def h264(seconds: float, gop: int, width: int = WIDTH, height: int = HEIGHT) -> tuple[Frame, ...]:
    """Encoded video: a moving bar on a changing background, GOP of ``gop`` frames."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, FPS)
    encoder.framerate = Fraction(FPS)
    encoder.gop_size = gop
    # No global header: x264 then repeats SPS/PPS in-band before every IDR (Annex-B).
    encoder.options = {
        "profile": "baseline",
        "preset": "ultrafast",
        "tune": "zerolatency",
        "keyint_min": str(gop),
        "sc_threshold": "0",
    }
    frames: list[Frame] = []
    for i in range(round(seconds * FPS)):
        picture = av.VideoFrame(width, height, "yuv420p")
        stride = picture.planes[0].line_size
        luma = bytearray([(i * 3) % 200 + 20]) * (stride * height)
        row = (i * 5) % (height - 8)
        luma[row * stride : (row + 8) * stride] = b"\xf0" * (8 * stride)
        picture.planes[0].update(bytes(luma))
        for plane in picture.planes[1:]:
            plane.update(bytes([128]) * (plane.line_size * plane.height))
        picture.pts = i
        frames += [Frame(bytes(p), p.pts, p.is_keyframe) for p in encoder.encode(picture)]
    frames += [Frame(bytes(p), p.pts, p.is_keyframe) for p in encoder.encode(None)]
    return tuple(frames)


@cache
def opus(seconds: float, channels: int = 2) -> tuple[Frame, ...]:
    """Encoded audio: a 440 Hz tone, stereo (or mono), 20-ms packets."""
    layout = "stereo" if channels == 2 else "mono"
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, layout, "s16"
    encoder.bit_rate = 64000
    encoder.time_base = Fraction(1, 48000)
    period = [int(8000 * math.sin(2 * math.pi * 440 * j / 48000)) for j in range(48000)]
    out: list[Frame] = []
    total = round(seconds * 48000) // OPUS_FRAME * OPUS_FRAME
    for start in range(0, total, OPUS_FRAME):
        samples = [period[(start + j) % 48000] for j in range(OPUS_FRAME) for _ in range(channels)]
        chunk = av.AudioFrame(format="s16", layout=layout, samples=OPUS_FRAME)
        chunk.planes[0].update(struct.pack(f"<{len(samples)}h", *samples))
        chunk.sample_rate = 48000
        chunk.pts = start
        out += [bytes(p) for p in encoder.encode(chunk)]
    out += [bytes(p) for p in encoder.encode(None)]
    # RTP numbers Opus packets by their first sample, from 0 (the encoder's own pts
    # include its look-ahead).
    return tuple(Frame(data, k * OPUS_FRAME, True) for k, data in enumerate(out[: total // 960]))


def video_packets(frames: Iterable[Frame], base: float, *, offset: int = 0) -> list[MediaPacket]:
    return [
        MediaPacket(
            kind="video",
            codec="h264",
            data=f.data,
            pts=offset + f.index * 90000 // FPS,
            time_base=Fraction(1, 90000),
            keyframe=f.keyframe,
            arrival=base + (offset + f.index * 90000 // FPS) / 90000,
        )
        for f in frames
    ]


def audio_packets(frames: Iterable[Frame], base: float, *, offset: int = 0) -> list[MediaPacket]:
    return [
        MediaPacket(
            kind="audio",
            codec="opus",
            data=f.data,
            pts=offset + f.index,
            time_base=Fraction(1, 48000),
            keyframe=True,
            arrival=base + (offset + f.index) / 48000,
        )
        for f in frames
    ]


class ListSource:
    """A finished ingest: hands out its packets, then ``None`` (the hub's end)."""

    def __init__(self, packets: Iterable[MediaPacket]) -> None:
        self.packets = deque(packets)

    async def get(self) -> MediaPacket | None:
        return self.packets.popleft() if self.packets else None


class LiveSource:
    """An ingest still running: packets are pushed by the test; get() waits for them."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[MediaPacket | None] = asyncio.Queue()

    async def get(self) -> MediaPacket | None:
        return await self.queue.get()


class CountingSource(LiveSource):
    """A live source that says how much it holds (as a hub consumer does) and counts the
    reads that found it empty, i.e. that had to wait for the next packet."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    @property
    def pending(self) -> int:
        return self.queue.qsize()

    async def get(self) -> MediaPacket | None:
        if self.queue.empty():
            self.waits += 1
        return await self.queue.get()


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def strip_aud(data: bytes) -> bytes:
    """Drop the access unit delimiter the MPEG-TS muxer puts before each H.264 frame."""
    aud = b"\x00\x00\x00\x01\x09\xf0"
    return data[len(aud) :] if data.startswith(aud) else data


@dataclass
class TsSegment:
    video: list[tuple[int, bytes, bool]]  # (pts, data, keyframe)
    audio: list[int]  # pts
    audio_samples: int
    codecs: dict[str, str]
    size: tuple[int, int] | None
    audio_format: tuple[int, int] | None  # (sample rate, channels)


def read_segment(path: Path) -> TsSegment:
    with av.open(str(path)) as container:
        assert container.format.name == "mpegts"
        codecs = {s.type: s.codec_context.name for s in container.streams}
        size = None
        audio_format = None
        if container.streams.video:
            ctx = container.streams.video[0].codec_context
            size = (ctx.width, ctx.height)
        if container.streams.audio:
            actx = container.streams.audio[0].codec_context
            audio_format = (actx.sample_rate, actx.channels)
        video: list[tuple[int, bytes, bool]] = []
        audio: list[int] = []
        for packet in container.demux():
            if packet.size == 0 or packet.pts is None:
                continue
            if packet.stream.type == "video":
                video.append((packet.pts, strip_aud(bytes(packet)), packet.is_keyframe))
            else:
                audio.append(packet.pts)
    samples = 0
    if audio:
        with av.open(str(path)) as container:
            for frame in container.decode(audio=0):
                samples += frame.samples
    return TsSegment(video, audio, samples, codecs, size, audio_format)


async def package(
    out: Path,
    *,
    video: list[MediaPacket] | None,
    audio: list[MediaPacket] | None,
    snapshots: list[tuple[Segment, str, str]] | None = None,
    **kwargs: Any,
) -> HlsPackager:
    def on_segment(segment: Segment) -> None:
        if snapshots is not None:
            snapshots.append(
                (
                    segment,
                    (out / LIVE_PLAYLIST).read_text(),
                    (out / ARCHIVE_PLAYLIST).read_text(),
                )
            )

    packager = HlsPackager(
        "stage-1",
        out,
        video=ListSource(video) if video is not None else None,
        audio=ListSource(audio) if audio is not None else None,
        clock=FixedClock(START),
        on_segment=on_segment,
        **kwargs,
    )
    await asyncio.wait_for(packager.run(), timeout=60)
    return packager


def tag_values(playlist: str, tag: str) -> list[str]:
    return [line.split(":", 1)[1] for line in playlist.splitlines() if line.startswith(tag + ":")]


# --- tests ------------------------------------------------------------------------------


async def test_stage_is_packaged_into_gop_aligned_ts_segments(tmp_path: Path) -> None:
    """9 s of 640x360 H.264 (GOP 1 s) and Opus → 2-s segments, video copied."""
    base = time.monotonic()
    frames = h264(9, gop=FPS)
    video = video_packets(frames, base)
    audio = audio_packets(opus(9), base)
    snapshots: list[tuple[Segment, str, str]] = []
    packager = await package(tmp_path, video=video, audio=audio, snapshots=snapshots, window=3)

    segments = packager.segments
    assert [s.uri for s in segments] == [f"seg-{i:06d}.ts" for i in range(5)]
    # Cut at every second keyframe; the last one also holds the final AAC frame.
    assert [float(s.duration) for s in segments[:-1]] == [2, 2, 2, 2]
    assert float(segments[-1].duration) == pytest.approx(1, abs=1024 / 48000)

    # The live playlist slides: at most `window` segments, the media sequence follows.
    assert len(snapshots) == 5
    for count, (segment, live, archive) in enumerate(snapshots, start=1):
        listed = parse_playlist(live)
        assert [s.sequence for s in listed] == list(range(max(0, count - 3), count))
        assert tag_values(live, "#EXT-X-MEDIA-SEQUENCE") == [str(max(0, count - 3))]
        assert "#EXT-X-ENDLIST" not in live
        assert len(parse_playlist(archive)) == count
        assert "#EXT-X-PLAYLIST-TYPE:EVENT" in archive and "#EXT-X-ENDLIST" not in archive
        assert segment.sequence == count - 1

    # After the stream ended both playlists are closed; the archive lists everything.
    live = (tmp_path / LIVE_PLAYLIST).read_text()
    archive = (tmp_path / ARCHIVE_PLAYLIST).read_text()
    assert live.endswith("#EXT-X-ENDLIST\n") and archive.endswith("#EXT-X-ENDLIST\n")
    assert [s.uri for s in parse_playlist(archive)] == [s.uri for s in segments]
    assert tag_values(archive, "#EXT-X-TARGETDURATION") == ["2"]
    # Nothing but segments and playlists: the temporary playlist files were renamed.
    assert sorted(os.listdir(tmp_path)) == sorted(
        [ARCHIVE_PLAYLIST, LIVE_PLAYLIST, *(s.uri for s in segments)]
    )

    # Program date times step by the segment durations.
    times = [datetime.fromisoformat(v) for v in tag_values(archive, "#EXT-X-PROGRAM-DATE-TIME")]
    for earlier, later, segment in zip(times, times[1:], segments, strict=False):
        assert (later - earlier) == pytest.approx(
            timedelta(seconds=float(segment.duration)), abs=timedelta(milliseconds=1)
        )
    assert abs(times[0] - START) < timedelta(seconds=5)

    parsed = [read_segment(tmp_path / s.uri) for s in segments]
    copied: list[bytes] = []
    for segment, ts in zip(segments, parsed, strict=True):
        assert ts.codecs == {"video": "h264", "audio": "aac"}
        assert ts.size == (WIDTH, HEIGHT)
        assert ts.audio_format == (48000, 2)
        assert ts.video[0][2], "every segment starts on a keyframe"
        # Duration from the frames inside: the GOP-aligned length.
        assert len(ts.video) / FPS == pytest.approx(float(segment.duration), abs=2 / FPS)
        # Audio covers the segment too (AAC frames are 21.3 ms).
        assert ts.audio_samples / 48000 == pytest.approx(float(segment.duration), abs=0.05)
        copied += [data for _, data, _ in ts.video]
    # Video was copied, never re-encoded: every frame's bytes are the publisher's.
    assert copied == [f.data for f in frames]

    # A player (FFmpeg's HLS demuxer) reads the archive end to end: all frames, all audio.
    with av.open(str(tmp_path / ARCHIVE_PLAYLIST)) as player:
        decoded = list(player.decode(player.streams.video[0], player.streams.audio[0]))
    assert sum(isinstance(f, av.VideoFrame) for f in decoded) == len(frames)
    played = sum(f.samples for f in decoded if isinstance(f, av.AudioFrame))
    assert played / 48000 == pytest.approx(9.0, abs=0.05)

    # Timestamps run on across segments (one timeline), audio starts with the video.
    for ts, nxt, segment in zip(parsed, parsed[1:], segments, strict=False):
        assert nxt.video[0][0] - ts.video[0][0] == round(segment.duration * 90000)
    assert abs(parsed[0].audio[0] - parsed[0].video[0][0]) < 0.05 * 90000


async def test_segments_follow_a_gop_longer_than_the_segment_length(tmp_path: Path) -> None:
    """Video only, GOP 3 s: segments are 3 s, the target duration says so, and the
    packager asks for keyframes while a segment overruns."""
    base = time.monotonic()
    frames = h264(7, gop=3 * FPS)
    requests: list[float] = []
    packager = await package(
        tmp_path,
        video=video_packets(frames, base),
        audio=None,
        keyframe_request=lambda: requests.append(1.0),
    )
    assert [float(s.duration) for s in packager.segments] == pytest.approx([3, 3, 1], abs=1e-6)
    archive = (tmp_path / ARCHIVE_PLAYLIST).read_text()
    assert tag_values(archive, "#EXT-X-TARGETDURATION") == ["3"]
    assert len(requests) == 2  # once in each 3-s segment, after 2 s
    for segment in packager.segments:
        ts = read_segment(tmp_path / segment.uri)
        assert ts.codecs == {"video": "h264"}
        assert len(ts.video) / FPS == pytest.approx(float(segment.duration), abs=2 / FPS)


@pytest.mark.parametrize("channels", [2, 1])
async def test_radio_stage_is_audio_only_aac(tmp_path: Path, channels: int) -> None:
    """Opus in, AAC in TS out, cut every 2 s; a half-second hole is filled with silence.

    The AAC has the publisher's channels: browsers send mono Opus, a desk stereo.
    """
    base = time.monotonic()
    frames = opus(7, channels)
    kept = [f for f in frames if not 150 <= f.index // OPUS_FRAME < 175]
    packager = await package(tmp_path, video=None, audio=audio_packets(kept, base))
    segments = packager.segments
    assert len(segments) == 4
    for segment in segments[:-1]:
        assert float(segment.duration) == pytest.approx(2.0, abs=1024 / 48000)
    total = 0
    for segment in segments:
        ts = read_segment(tmp_path / segment.uri)
        assert ts.codecs == {"audio": "aac"}
        assert ts.audio_format == (48000, channels)
        # Contiguous AAC frames: the gap was filled, the audio clock did not slip.
        steps = {b - a for a, b in zip(ts.audio, ts.audio[1:], strict=False)}
        assert steps == {1920}
        total += ts.audio_samples
    assert total / 48000 == pytest.approx(7.0, abs=0.05)
    assert sum(float(s.duration) for s in segments) == pytest.approx(7.0, abs=0.05)
    assert (tmp_path / LIVE_PLAYLIST).read_text().endswith("#EXT-X-ENDLIST\n")


async def test_reconnect_resumes_with_a_discontinuity(tmp_path: Path) -> None:
    base = time.monotonic()
    first = await package(
        tmp_path,
        video=video_packets(h264(4, gop=FPS), base),
        audio=audio_packets(opus(4), base),
    )
    assert len(first.segments) == 2

    with pytest.raises(FileExistsError):
        HlsPackager("stage-1", tmp_path, video=None, audio=ListSource([]), clock=FixedClock(START))

    # The publisher comes back: a new ingest, timestamps from zero again.
    later = time.monotonic() + 60
    second = await package(
        tmp_path,
        video=video_packets(h264(4, gop=FPS), later),
        audio=audio_packets(opus(4), later),
        resume=True,
        window=3,
    )
    archive = (tmp_path / ARCHIVE_PLAYLIST).read_text()
    listed = parse_playlist(archive)
    assert [s.sequence for s in listed] == [0, 1, 2, 3]
    assert [s.discontinuity for s in listed] == [False, False, True, False]
    assert archive.count("#EXT-X-DISCONTINUITY") == 1
    assert archive.endswith("#EXT-X-ENDLIST\n")
    live = (tmp_path / LIVE_PLAYLIST).read_text()
    assert tag_values(live, "#EXT-X-MEDIA-SEQUENCE") == ["1"]
    assert "#EXT-X-DISCONTINUITY\n" in live
    assert [(s.uri, s.discontinuity) for s in second.segments] == [
        (s.uri, s.discontinuity) for s in listed
    ]
    for segment in listed:
        assert read_segment(tmp_path / segment.uri).video[0][2]


def live_packager(out: Path) -> tuple[HlsPackager, LiveSource, LiveSource, asyncio.Event]:
    """A packager on two live sources, and an event set when it finishes a segment."""
    video, audio = LiveSource(), LiveSource()
    segment_done = asyncio.Event()
    packager = HlsPackager(
        "stage-1",
        out,
        video=video,
        audio=audio,
        clock=FixedClock(START),
        on_segment=lambda _segment: segment_done.set(),
    )
    return packager, video, audio, segment_done


async def test_close_mid_stream_finishes_the_archive_not_the_live_playlist(
    tmp_path: Path,
) -> None:
    base = time.monotonic()
    packager, video, audio, first_segment = live_packager(tmp_path)
    running = asyncio.create_task(packager.run())
    for packet in video_packets(h264(3, gop=FPS), base):
        video.queue.put_nowait(packet)
    for packet in audio_packets(opus(3), base):
        audio.queue.put_nowait(packet)
    await asyncio.wait_for(first_segment.wait(), timeout=30)

    packager.close()
    await asyncio.wait_for(running, timeout=5)
    assert (tmp_path / ARCHIVE_PLAYLIST).read_text().endswith("#EXT-X-ENDLIST\n")
    live = (tmp_path / LIVE_PLAYLIST).read_text()
    assert "#EXT-X-ENDLIST" not in live
    # The segment open at close() was finished and listed, and it plays.
    assert len(packager.segments) == 2
    last = read_segment(tmp_path / packager.segments[-1].uri)
    assert last.video and last.video[0][2]


async def test_a_silent_audio_track_does_not_stall_the_video(tmp_path: Path) -> None:
    """The audio track is negotiated but sends nothing: after MAX_SKEW_SECONDS of
    waiting for it in real time, video is packaged without it."""
    base = time.monotonic()
    packager, video, audio, first_segment = live_packager(tmp_path)
    running = asyncio.create_task(packager.run())
    for packet in video_packets(h264(3, gop=FPS), base):
        video.queue.put_nowait(packet)
    await asyncio.wait_for(first_segment.wait(), timeout=10)
    video.queue.put_nowait(None)
    audio.queue.put_nowait(None)
    await asyncio.wait_for(running, timeout=10)
    assert [float(s.duration) for s in packager.segments] == pytest.approx([2, 1], abs=0.04)
    assert len(read_segment(tmp_path / "seg-000000.ts").video) == 2 * FPS


async def test_recorder_copies_video_and_opus_into_matroska(tmp_path: Path) -> None:
    base = time.monotonic()
    frames = h264(5, gop=FPS)
    sound = opus(5)
    path = tmp_path / "stage-1.mkv"
    recorder = Recorder(
        path,
        video=ListSource(video_packets(frames, base)),
        audio=ListSource(audio_packets(sound, base)),
    )
    await asyncio.wait_for(recorder.run(), timeout=60)
    recorder.close()  # idempotent after the run finalised the file

    with av.open(str(path)) as container:
        assert container.format.name.startswith("matroska")
        assert container.duration is not None
        assert container.duration / 1_000_000 == pytest.approx(5.0, abs=0.1)
        video_stream = container.streams.video[0]
        audio_stream = container.streams.audio[0]
        assert video_stream.codec_context.name == "h264"
        assert (video_stream.codec_context.width, video_stream.codec_context.height) == (
            WIDTH,
            HEIGHT,
        )
        assert audio_stream.codec_context.name == "opus"
        assert (audio_stream.codec_context.extradata or b"").startswith(b"OpusHead")
        video_data: list[bytes] = []
        audio_data: list[bytes] = []
        for packet in container.demux():
            if packet.size == 0:
                continue
            (video_data if packet.stream.type == "video" else audio_data).append(bytes(packet))
    # Matroska stores H.264 length-prefixed; the NAL units are the publisher's.
    assert [annexb_units(f.data) for f in frames] == [length_units(d) for d in video_data]
    assert audio_data == [f.data for f in sound]

    # And it plays: every frame decodes.
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(frames)


async def test_recorder_copies_vp8_too(tmp_path: Path) -> None:
    """Chromium may publish VP8: MPEG-TS cannot hold it, Matroska can, uncopied."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.time_base = Fraction(1, FPS)
    encoder.gop_size = FPS
    encoder.options = {"deadline": "realtime", "cpu-used": "8"}
    frames: list[Frame] = []
    for i in range(2 * FPS):
        picture = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        for plane in picture.planes:
            plane.update(bytes([(i * 4) % 256]) * (plane.line_size * plane.height))
        picture.pts = i
        frames += [Frame(bytes(p), p.pts, p.is_keyframe) for p in encoder.encode(picture)]
    frames += [Frame(bytes(p), p.pts, p.is_keyframe) for p in encoder.encode(None)]
    base = time.monotonic()
    packets = [
        MediaPacket(
            kind="video",
            codec="vp8",
            data=f.data,
            pts=f.index * 3000,
            time_base=Fraction(1, 90000),
            keyframe=f.keyframe,
            arrival=base + f.index / FPS,
        )
        for f in frames
    ]
    path = tmp_path / "vp8.mkv"
    await asyncio.wait_for(Recorder(path, video=ListSource(packets), audio=None).run(), 60)
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video"]
        ctx = container.streams.video[0].codec_context
        assert (ctx.name, ctx.width, ctx.height) == ("vp8", WIDTH, HEIGHT)
        stored = [bytes(p) for p in container.demux() if p.size]
    assert stored == [f.data for f in frames]


CRASHING_RECORDER = """
import asyncio, os, pickle, sys
from pathlib import Path
from hybridcon.media.recorder import Recorder

packets = pickle.loads(Path(sys.argv[1]).read_bytes())
stop_after = int(sys.argv[3])

class Source:
    def __init__(self, kind):
        self.packets = [p for p in packets if p.kind == kind]
        self.served = 0
    async def get(self):
        served = video.served + audio.served
        if served >= stop_after:
            os._exit(0)  # the process dies: no close(), no trailer
        self.served += 1
        return self.packets[self.served - 1] if self.served <= len(self.packets) else None

video, audio = Source("video"), Source("audio")
asyncio.run(Recorder(Path(sys.argv[2]), video=video, audio=audio).run())
"""


async def test_a_recording_cut_off_by_a_crash_still_plays(tmp_path: Path) -> None:
    """Kill the recording process half-way through 6 s: what reached the disk plays."""
    base = time.monotonic()
    frames = h264(6, gop=FPS)
    packets = video_packets(frames, base) + audio_packets(opus(6), base)
    dump = tmp_path / "packets.pickle"
    dump.write_bytes(pickle.dumps(packets))
    path = tmp_path / "crashed.mkv"
    half = len(packets) // 2  # about 3 s of both streams
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_RECORDER, str(dump), str(path), str(half)
    )
    assert await asyncio.wait_for(process.wait(), timeout=60) == 0

    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        decoded = sum(1 for _ in container.decode(video=0))
    # At most the open cluster (CLUSTER_MS, 1 s) and the muxer's queue are lost.
    assert 1.5 * FPS <= decoded <= 3 * FPS


def annexb_units(data: bytes) -> list[bytes]:
    parts = [p.rstrip(b"\x00") for p in data.split(b"\x00\x00\x01")]
    # x264's SEI and the AUD carry no picture; Matroska keeps them as they are.
    return [p for p in parts if p]


def length_units(data: bytes) -> list[bytes]:
    units = []
    pos = 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        units.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return units


def test_sps_sizes_are_read_without_decoding() -> None:
    """The recorder's header needs the frame size; it reads it from the SPS, cropped."""
    assert h264_size(h264(0.1, gop=FPS)[0].data) == (WIDTH, HEIGHT)
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 1280, 720, "yuv420p"
    encoder.time_base = Fraction(1, FPS)
    encoder.options = {"profile": "high", "preset": "ultrafast"}
    picture = av.VideoFrame(1280, 720, "yuv420p")
    for plane in picture.planes:
        plane.update(bytes(plane.line_size * plane.height))
    picture.pts = 0
    packets = [*encoder.encode(picture), *encoder.encode(None)]
    assert h264_size(bytes(packets[0])) == (1280, 720)


@pytest.mark.parametrize("batch", [0.1, 0.0])
async def test_the_merge_reads_sources_that_say_what_they_hold_in_batches(batch: float) -> None:
    """Packets that arrive one by one in real time are read a batch at a time (a few
    wake-ups a second, not one per packet), and still come out in time order."""
    base = time.monotonic()
    video, audio = CountingSource(), CountingSource()
    merger = PacketMerger({"video": video, "audio": audio}, batch_seconds=batch)
    frames = video_packets(h264(2, gop=FPS), base)
    sounds = audio_packets(opus(2), base)
    arrivals = sorted(
        [(p.pts / 90000, p, video) for p in frames] + [(p.pts / 48000, p, audio) for p in sounds],
        key=lambda item: item[0],
    )[:150]

    async def feed() -> None:
        # Live media: packets arrive spread over time (5 ms apart here, faster than real).
        for _, packet, source in arrivals:
            source.queue.put_nowait(packet)
            await asyncio.sleep(0.005)
        video.queue.put_nowait(None)
        audio.queue.put_nowait(None)

    feeder = asyncio.create_task(feed())
    out = []
    while (item := await merger.next()) is not None:
        out.append(item.ticks)
    await feeder
    assert len(out) == len(arrivals)
    assert out == sorted(out)
    reads_that_waited = video.waits + audio.waits
    if batch:
        # 150 packets over about 0.75 s: a few batches per reader, not 150 wake-ups.
        assert reads_that_waited <= 2 * (0.75 / batch + 3), reads_that_waited
    else:
        assert reads_that_waited > 75, reads_that_waited
