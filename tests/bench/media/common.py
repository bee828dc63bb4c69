"""What the media benchmarks share: test media, paced packet tracks, time stamps in
pixels, and readings of processes and cores from ``/proc``.

Nothing here talks to the server; :mod:`tests.bench.media.agent` and
:mod:`tests.bench.media.isolated` use these pieces in their own processes.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

VIDEO_HZ = 90_000
OPUS_HZ = 48_000
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The media goals.
GOAL_CPU_PER_VIEWER = 1.0  # % of a core per WHEP viewer
GOAL_CPU_PER_STAGE = 2.0  # % of a core per HLS-packaged stage
GOAL_SIX_STAGES = 15.0  # % of a core for six stages together
GOAL_LATENCY_P95_MS = 150.0
GOAL_TTFF_MS = 300.0


# --- test media ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """A pre-encoded clip held in memory, ready to be looped by :class:`LoopTrack`.

    Attributes:
        path: the MPEG-TS file it was read from.
        width: frame width.
        height: frame height.
        fps: frames per second.
        gop_frames: frames per GOP.
        video: ``(pts in 1/90000 s from 0, Annex-B data, keyframe)`` per frame.
        audio: ``(pts in 1/48000 s from 0, Opus data)`` per packet.
        period: loop length in seconds (the video's length; the clip starts on an IDR).
    """

    path: Path
    width: int
    height: int
    fps: int
    gop_frames: int
    video: list[tuple[int, bytes, bool]]
    audio: list[tuple[int, bytes]]
    period: float

    @property
    def video_bitrate(self) -> float:
        """Mean video payload bits per second."""
        return sum(len(d) for _, d, _ in self.video) * 8 / self.period

    @property
    def audio_bitrate(self) -> float:
        """Mean audio payload bits per second."""
        return sum(len(d) for _, d in self.audio) * 8 / self.period


def make_clip(
    directory: Path,
    *,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    seconds: float = 10.0,
    gop_seconds: float = 2.0,
    bitrate: int = 2_500_000,
) -> Clip:
    """Encode (once per directory) and load a constrained-baseline H.264 + Opus clip.

    The clip is FFmpeg's ``testsrc2`` through libx264 (ultrafast, zerolatency, closed
    GOPs of ``gop_seconds``, no B-frames) and a sine through libopus, in MPEG-TS.
    """
    from tests.media_fixtures import make_media

    directory.mkdir(parents=True, exist_ok=True)
    media = make_media(
        directory,
        width=width,
        height=height,
        fps=fps,
        seconds=seconds,
        gop_seconds=gop_seconds,
        bitrate=bitrate,
    )
    return load_clip(media.path, width=width, height=height, fps=fps, gop=media.gop_frames)


def load_clip(path: Path, *, width: int, height: int, fps: int, gop: int) -> Clip:
    """Read every packet of an H.264 + Opus MPEG-TS file into memory."""
    video: list[tuple[int, bytes, bool]] = []
    audio: list[tuple[int, bytes]] = []
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size == 0 or packet.pts is None:
                continue
            seconds = packet.pts * packet.time_base
            if packet.stream.type == "video":
                video.append((round(seconds * VIDEO_HZ), bytes(packet), packet.is_keyframe))
            elif packet.stream.type == "audio":
                audio.append((round(seconds * OPUS_HZ), bytes(packet)))
    video.sort(key=lambda item: item[0])
    audio.sort(key=lambda item: item[0])
    if not video or not video[0][2]:
        raise RuntimeError(f"{path} does not start with a keyframe")
    v0 = video[0][0]
    video = [(pts - v0, data, key) for pts, data, key in video]
    period = len(video) / fps
    if audio:
        a0 = audio[0][0]
        audio = [(pts - a0, data) for pts, data in audio if pts - a0 < period * OPUS_HZ]
    return Clip(path, width, height, fps, gop, video, audio, period)


class SharedStart:
    """One wall-clock origin for a publisher's tracks, so audio and video stay in step."""

    def __init__(self) -> None:
        self.origin: float | None = None

    def at(self) -> float:
        if self.origin is None:
            self.origin = time.monotonic() + 0.05
        return self.origin


class LoopTrack(MediaStreamTrack):
    """Plays one kind of a :class:`Clip` as ``av.Packet`` s in real time, looped forever.

    Timestamps run on across loops (``pts + loop * period``), so receivers see one
    endless stream; each loop starts on the clip's first IDR.
    """

    def __init__(self, clip: Clip, kind: str, start: SharedStart) -> None:
        super().__init__()
        self.kind = kind
        self._start = start
        if kind == "video":
            self._items = [(pts, data) for pts, data, _ in clip.video]
            self._hz = VIDEO_HZ
        else:
            self._items = list(clip.audio)
            self._hz = OPUS_HZ
        self._period = round(clip.period * self._hz)
        self._time_base = Fraction(1, self._hz)
        self._index = 0
        self.sent = 0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        loop, index = divmod(self._index, len(self._items))
        self._index += 1
        pts, data = self._items[index]
        pts += loop * self._period
        due = self._start.at() + pts / self._hz
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = self._time_base
        self.sent += 1
        return packet


# --- time stamps burnt into pixels -----------------------------------------------------------

STAMP_BITS = 40
STAMP_ROWS = 64  # 32 rows of the stamp, then 32 rows of its inverse (a check)
BLACK, WHITE = 16, 235


def stamp_now_ms() -> int:
    """The value burnt into frames: CLOCK_MONOTONIC in ms (the same in every process)."""
    return time.monotonic_ns() // 1_000_000 % (1 << STAMP_BITS)


def burn_stamp(yuv: np.ndarray, width: int, height: int, value: int) -> None:
    """Write ``value`` into the first 64 rows of a packed yuv420p array (PyAV's layout).

    Each bit is a ``width/40``-pixel wide block, white for 1, black for 0; the next 32
    rows hold the inverse so that a misread is caught. Chroma there is set neutral.
    """
    block = width // STAMP_BITS
    bits = np.array([(value >> (STAMP_BITS - 1 - i)) & 1 for i in range(STAMP_BITS)], np.uint8)
    row = np.full(width, BLACK, np.uint8)
    row[: block * STAMP_BITS] = np.repeat(np.where(bits == 1, WHITE, BLACK), block)
    yuv[0:32, :] = row
    yuv[32:64, :] = BLACK + WHITE - row
    # U and V planes: (height/2 x width/2) each, packed as height/4 rows of width.
    chroma_rows = STAMP_ROWS // 2 * (width // 2) // width
    yuv[height : height + chroma_rows, :] = 128
    yuv[height + height // 4 : height + height // 4 + chroma_rows, :] = 128


def read_stamp(frame: av.VideoFrame) -> int | None:
    """The value :func:`burn_stamp` wrote into a decoded frame, or None if unreadable."""
    plane = frame.planes[0]
    luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    block = frame.width // STAMP_BITS
    if block < 8 or luma.shape[0] < STAMP_ROWS:
        return None
    span = block * STAMP_BITS
    lo, hi = block // 4, block - block // 4
    top = luma[8:24, :span].reshape(16, STAMP_BITS, block)[:, :, lo:hi].mean(axis=(0, 2))
    bottom = luma[40:56, :span].reshape(16, STAMP_BITS, block)[:, :, lo:hi].mean(axis=(0, 2))
    bits = top > 128
    if not np.array_equal(bits, bottom < 128):
        return None
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


def stamp_age_ms(value: int) -> float:
    """Milliseconds between a stamp and now (modulo the stamp's range)."""
    return float((stamp_now_ms() - value) % (1 << STAMP_BITS))


def testsrc_frames(width: int, height: int, fps: int, count: int) -> list[np.ndarray]:
    """``count`` frames of FFmpeg's moving ``testsrc2`` as packed yuv420p arrays."""
    frames = []
    seconds = math.ceil(count / fps) + 1
    with av.open(
        f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}", format="lavfi"
    ) as source:
        for frame in source.decode(video=0):
            frames.append(frame.reformat(format="yuv420p").to_ndarray())
            if len(frames) == count:
                break
    return frames


class StampedEncoderTrack(MediaStreamTrack):
    """A live encoder: each frame gets the time in pixels just before libx264 encodes it.

    It yields ``av.Packet`` s (Annex-B), so aiortc only packetizes; libx264 runs with
    ``ultrafast`` / ``zerolatency`` (one packet out per frame in), constrained baseline,
    a fixed GOP, in a worker thread so that the event loop keeps reading the viewer.
    """

    kind = "video"

    def __init__(
        self,
        *,
        width: int = 1280,
        height: int = 720,
        fps: int = 30,
        bitrate: int = 2_500_000,
        gop_seconds: float = 2.0,
    ) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._frames = testsrc_frames(width, height, fps, 2 * fps)
        codec = av.CodecContext.create("libx264", "w")
        codec.width = width
        codec.height = height
        codec.pix_fmt = "yuv420p"
        codec.bit_rate = bitrate
        codec.framerate = Fraction(fps, 1)
        codec.time_base = Fraction(1, fps)
        gop = str(max(1, round(gop_seconds * fps)))
        codec.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "bf": "0",
            "g": gop,
            "keyint_min": gop,
            "sc_threshold": "0",
            "threads": "1",
        }
        self._codec = codec
        self._index = 0
        self._origin: float | None = None
        self._force_keyframe = False
        self.bytes = 0
        self.encode_seconds = 0.0
        self.keyframe_requests = 0

    def force_keyframe(self) -> None:
        """Make the next frame an IDR (a browser's encoder answers a PLI this way)."""
        self._force_keyframe = True
        self.keyframe_requests += 1

    def _encode(self, index: int) -> bytes:
        yuv = self._frames[index % len(self._frames)].copy()
        burn_stamp(yuv, self.width, self.height, stamp_now_ms())
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = index
        frame.time_base = Fraction(1, self.fps)
        if self._force_keyframe:
            self._force_keyframe = False
            frame.pict_type = av.video.frame.PictureType.I
        started = time.thread_time()
        data = b"".join(bytes(p) for p in self._codec.encode(frame))
        self.encode_seconds += time.thread_time() - started
        return data

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._origin is None:
            self._origin = time.monotonic()
        index = self._index
        self._index += 1
        delay = self._origin + index / self.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        data = await asyncio.get_running_loop().run_in_executor(None, self._encode, index)
        self.bytes += len(data)
        packet = av.Packet(data)
        packet.pts = index * VIDEO_HZ // self.fps
        packet.time_base = Fraction(1, VIDEO_HZ)
        return packet


# --- /proc readings ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def core_times() -> dict[int, dict[str, float]]:
    """Per core, seconds since boot from ``/proc/stat``: ``busy`` (everything but idle
    and iowait), ``tasks`` (user, nice, system), ``softirq`` (irq + softirq: loopback
    packet delivery lands here, outside any process's time), ``steal`` and ``total``."""
    cores = {}
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *values = line.split()
                t = [int(v) / CLK_TCK for v in values[:8]]
                total = sum(t)
                cores[int(name[3:])] = {
                    "busy": total - t[3] - t[4],
                    "tasks": t[0] + t[1] + t[2],
                    "softirq": t[5] + t[6],
                    "steal": t[7],
                    "total": total,
                }
    return cores


def udp_errors() -> dict[str, int]:
    """The machine's UDP error counters (``/proc/net/snmp``): drops show as RcvbufErrors."""
    with open("/proc/net/snmp", encoding="ascii") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    names, values = lines[0][1:], lines[1][1:]
    wanted = ("InErrors", "RcvbufErrors", "SndbufErrors")
    return {n: int(v) for n, v in zip(names, values, strict=True) if n in wanted}


class Window:
    """CPU of some processes and busy time of some cores over a stretch of wall time."""

    def __init__(self, pids: dict[str, int], cores: Sequence[int] = ()) -> None:
        self.pids = pids
        self.cores = list(cores)
        self._wall = time.monotonic()
        self._cpu = {name: _safe_cpu(pid) for name, pid in pids.items()}
        self._cores = core_times()
        self._udp = udp_errors()

    def close(self) -> dict[str, Any]:
        """``{"seconds", "cpu": {name: % of a core}, "cores": {n: busy %}, "core_parts":
        {n: {"tasks", "softirq", "steal"}: %}, "udp": {counter: delta}}``."""
        wall = time.monotonic() - self._wall
        cores = core_times()
        udp = udp_errors()
        result: dict[str, Any] = {
            "seconds": wall,
            "cpu": {
                name: 100 * (_safe_cpu(pid) - self._cpu[name]) / wall
                for name, pid in self.pids.items()
            },
            "cores": {},
            "core_parts": {},
            "udp": {k: udp[k] - self._udp.get(k, 0) for k in udp},
        }
        for core in self.cores:
            before, after = self._cores.get(core), cores.get(core)
            if before is None or after is None:
                continue
            total = max(after["total"] - before["total"], 1e-9)
            share = {k: 100 * (after[k] - before[k]) / total for k in after if k != "total"}
            result["cores"][core] = share.pop("busy")
            result["core_parts"][core] = share
        return result


def _safe_cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (OSError, ValueError):
        return 0.0


# --- figures -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), linear between closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares ``(slope, intercept)``; None with fewer than two distinct x."""
    if len(set(xs)) < 2:
        return None
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    return slope, my - slope * mx


def fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    """A number for a table, or an en dash when missing."""
    return "–" if value is None else f"{value:{spec}}{unit}"


def pin(pid: int, cpu: int | None) -> None:
    """Pin a process (and its future threads) to one core, if asked and possible."""
    if cpu is not None and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(pid, {cpu})
