"""Measurements of one piece in a process of its own (pinned by the caller), no network.

``python -m tests.bench.media.isolated packager --clip FILE ...`` feeds the looped clip
into real :class:`~hybridcon.media.hub.StageHub` s and measures this process's CPU with
nothing reading the hubs, with consumers that discard every packet, with an
:class:`~hybridcon.media.hls.HlsPackager` per hub and with a packager and a
:class:`~hybridcon.media.recorder.Recorder` per hub. The differences are the packager's
and recorder's own cost; the WebRTC ingest is measured on the real service instead.

``python -m tests.bench.media.isolated transcode --clip FILE`` times what the
pass-through design avoids: decoding the clip once and aiortc's own H.264 encoder (what
a decoded track sent to a viewer costs, per viewer).

Each prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from tests.bench.media.common import LoopTrack, SharedStart, load_clip


async def _measure(seconds: float) -> float:
    """This process's CPU over ``seconds`` of wall time, in % of a core."""
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (time.process_time() - cpu) / (time.monotonic() - wall)


PHASES = ("hub_only", "discard", "hls", "hls_recorder")


async def _discard(consumer: Any) -> None:
    while await consumer.get() is not None:
        pass


async def packager(args: argparse.Namespace) -> dict[str, Any]:
    import structlog

    from hybridcon.clock import system_clock
    from hybridcon.media.hls import HlsPackager
    from hybridcon.media.hub import StageHub
    from hybridcon.media.recorder import Recorder

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    clip = load_clip(
        Path(args.clip), width=args.width, height=args.height, fps=args.fps, gop=args.gop
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="media-bench-hls-") as tmp:
        for count in args.stages:
            row: dict[str, Any] = {"stages": count}
            for phase in PHASES:
                # As the service does: outputs first, then the publisher's tracks, so
                # every output starts with the ingest's first packets.
                hubs = [StageHub(f"{phase}-{count}-{i}") for i in range(count)]
                tasks: list[asyncio.Task[Any]] = []
                packagers: list[HlsPackager] = []
                for hub in hubs:
                    folder = Path(tmp) / hub.stage
                    if phase == "discard":
                        for kind in ("video", "audio"):
                            consumer = hub.consumer(kind, name="discard")
                            tasks.append(asyncio.create_task(_discard(consumer)))
                    if phase in ("hls", "hls_recorder"):
                        hls = HlsPackager(
                            hub.stage,
                            folder / "hls",
                            video=hub.consumer("video", name="hls"),
                            audio=hub.consumer("audio", name="hls"),
                            clock=system_clock,
                            resume=True,
                            keyframe_request=hub.request_keyframe,
                        )
                        packagers.append(hls)
                        tasks.append(asyncio.create_task(hls.run()))
                    if phase == "hls_recorder":
                        folder.mkdir(parents=True, exist_ok=True)
                        recorder = Recorder(
                            folder / "recording.mkv",
                            video=hub.consumer("video", name="recorder"),
                            audio=hub.consumer("audio", name="recorder"),
                        )
                        tasks.append(asyncio.create_task(recorder.run()))
                    start = SharedStart()
                    for kind in ("video", "audio"):
                        await hub.attach(
                            LoopTrack(clip, kind, start), request_keyframe=lambda: None
                        )
                await asyncio.sleep(args.settle)
                row[phase] = await _measure(args.window)
                if packagers:
                    row["segments"] = sum(len(p.segments) for p in packagers)
                for hub in hubs:
                    await hub.detach()
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
            results.append(row)
    return {
        "rows": results,
        "window": args.window,
        "video_bitrate": clip.video_bitrate,
        "audio_bitrate": clip.audio_bitrate,
    }


def transcode(args: argparse.Namespace) -> dict[str, Any]:
    from aiortc.codecs.h264 import H264Encoder

    frames = []
    decode_cpu = 0.0
    with av.open(args.clip) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            started = time.process_time()
            decoded = packet.decode()
            decode_cpu += time.process_time() - started
            frames.extend(decoded)
            if len(frames) >= args.frames:
                break
    encoder = H264Encoder()
    encode_cpu = 0.0
    for index, frame in enumerate(frames[: args.frames]):
        frame.pts = index
        frame.time_base = Fraction(1, args.fps)
        started = time.process_time()
        encoder.encode(frame)
        encode_cpu += time.process_time() - started
    count = min(len(frames), args.frames)
    decode_ms = 1000 * decode_cpu / count
    encode_ms = 1000 * encode_cpu / count
    return {
        "frames": count,
        "decode_ms": decode_ms,
        "encode_ms": encode_ms,
        "decode_pct": decode_ms * args.fps / 10,
        "encode_pct": encode_ms * args.fps / 10,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["packager", "transcode"])
    parser.add_argument("--clip", required=True)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--gop", type=int, default=60)
    parser.add_argument("--stages", type=lambda s: [int(x) for x in s.split(",")], default=[1, 6])
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--frames", type=int, default=90)
    args = parser.parse_args()
    result = asyncio.run(packager(args)) if args.what == "packager" else transcode(args)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
