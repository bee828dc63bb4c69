"""FFmpeg's own WHIP muxer (inside the PyAV wheel) publishes to a stage; HLS follows the GOP.

A generated H.264 (baseline, 2-s GOP) + stereo Opus file is muxed packet by packet into
``av.open(url, "w", format="whip")`` at its own pace (by timestamp, so ~8 s of media take
~8 s). The muxer runs in a child process, not a thread: PyAV holds the GIL while FFmpeg
does the WHIP POST, ICE and DTLS (and the DELETE on close), which would freeze this
process's event loop, the one serving the answer. FFmpeg's self-made DTLS certificate
fails the handshake with aiortc, so an ECDSA P-256 one is generated here and passed
with ``cert_file`` / ``key_file``; the bearer token goes in ``authorization``. The
muxer takes stereo Opus only, so the tone is re-encoded in stereo here.

The stage must go live; its HLS playlist, fetched through the signed ``hls_url`` of
``stream.state``, must grow to three segments of one GOP each (#EXTINF 2.0 s within
0.1 s, but for the last one listed), each a valid MPEG-TS with H.264 and AAC starting
on a keyframe. Closing the muxer ends the stage: ``ended`` when FFmpeg sends its WHIP
``DELETE``, ``interrupted`` when the stall watch notices the silence instead; either
is accepted, and which one happened is printed (``-s``) with FFmpeg's own log line
and recorded as a junit property. The ended playlist then has every GOP and ENDLIST.

FFmpeg's muxer offers no candidates of its own: it sends to the first UDP host candidate
of the answer from a socket connected to it, so with hybridcon on loopback
(``ice_addresses``) it is on loopback too, without a namespace. Its log line naming
that transport is checked, and the ICE guard sees hybridcon's end of the media.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hybridcon.app import create_app
from hybridcon.core.tokens import Role
from ice_guard import IceGuard
from media_fixtures import make_media
from support import WsClient, eventually, hls_state, issue

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

STAGE = "plenary"
GOP_SECONDS = 2.0
MEDIA_SECONDS = 8.0
EXTINF = re.compile(r"^#EXTINF:([0-9.]+),", re.MULTILINE)
# FFmpeg's WHIP muxer, once it has the answer: "... transport=udp://127.0.0.1:40034, ..."
TRANSPORT = re.compile(r"transport=udp://\[?([0-9a-fA-F.:]+?)\]?:(\d+)")


def with_stereo_opus(video_only: Path, seconds: float) -> Path:
    """``video_only``'s H.264 with a stereo Opus tone: FFmpeg's WHIP muxer refuses mono
    ("Unsupported audio channels 1 by RTC, choose stereo"), and the shared test media
    is mono."""
    path = video_only.with_name(f"{video_only.stem}-stereo-opus.ts")
    with av.open(str(video_only)) as source, av.open(str(path), "w", format="mpegts") as out:
        # Every stream before the first packet: the header is written with it.
        video = out.add_stream_from_template(source.streams.video[0])
        sound = out.add_stream("libopus", rate=48000)
        sound.layout = "stereo"
        sound.bit_rate = 96_000
        for packet in source.demux(video=0):
            if packet.dts is not None:
                packet.stream = video
                out.mux(packet)
        tone = f"sine=frequency=440:sample_rate=48000:duration={seconds},"
        tone += "aformat=channel_layouts=stereo"
        with av.open(tone, format="lavfi") as generator:
            for frame in generator.decode(audio=0):
                out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return path


def ecdsa_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hybridcon-ffmpeg-whip-test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / "whip-cert.pem"
    key_file = directory / "whip-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


# The publisher runs in its own process: PyAV holds the GIL while FFmpeg writes the
# header (the WHIP POST, ICE and DTLS) and the trailer (the WHIP DELETE), so from a
# thread of this process it would stall the very event loop that has to answer it.
PUBLISHER = r"""
import json, sys, time
import av, av.logging

source, url, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
av.logging.restore_default_callback()  # FFmpeg's own log, to stderr
av.logging.set_libav_level(av.logging.VERBOSE)


def say(event, **data):
    print(json.dumps({"event": event, "t": time.monotonic(), **data}), flush=True)


with av.open(source) as demuxer:
    output = av.open(url, "w", format="whip", options=options)
    try:
        streams = {
            s.index: output.add_stream_from_template(s)
            for s in demuxer.streams
            if s.type in ("video", "audio")
        }
        started = first = None
        packets = 0
        for packet in demuxer.demux(*demuxer.streams):
            if packet.dts is None or packet.stream.index not in streams:
                continue  # the demuxer's end-of-stream packets
            at = float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)
            if started is None:
                started, first = time.monotonic(), at
            wait = started + (at - first) - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # real time: pace by the timestamps
            packet.stream = streams[packet.stream.index]
            output.mux(packet)  # the first one writes the header: WHIP POST, ICE, DTLS
            packets += 1
            if packets == 1:
                say("connected")
        say("muxed", packets=packets)
    finally:
        output.close()  # the trailer: FFmpeg's WHIP DELETE, if it sends one
        say("closed")
"""


@dataclass
class Publisher:
    """FFmpeg's WHIP muxer in a child process, and what it said."""

    process: asyncio.subprocess.Process
    log: Path
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] = field(init=False)

    @classmethod
    async def start(cls, source: Path, url: str, options: dict[str, str], log: Path) -> Publisher:
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                PUBLISHER,
                str(source),
                url,
                json.dumps(options),
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        publisher = cls(process, log)
        publisher._reader = asyncio.create_task(publisher._read())
        return publisher

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            self.events[message["event"]] = message
            self._arrived.set()

    async def event(self, name: str, timeout: float) -> dict[str, Any]:
        """Wait for the child's ``name`` event; fail early if it exits without it."""
        deadline = time.monotonic() + timeout
        while name not in self.events:
            if self._reader.done():
                await self.process.wait()
                raise AssertionError(
                    f"the WHIP publisher exited ({self.process.returncode}) before {name!r}:\n"
                    + self.log_tail()
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name!r} from the WHIP publisher:\n{self.log_tail()}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.5))
        return self.events[name]

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        await asyncio.gather(self._reader, return_exceptions=True)


def report(record_property: Any, name: str, value: Any) -> None:
    print(f"[ffmpeg-whip] {name} = {value}")
    record_property(name, value)


async def test_ffmpeg_whip_muxer_publishes_and_hls_follows_the_gop(
    make_settings: Any, tmp_path: Path, record_property: Any, ice_guard: IceGuard
) -> None:
    settings = make_settings(stream_stall_seconds=2, hls_segment_seconds=GOP_SECONDS)
    media = make_media(
        tmp_path,
        seconds=MEDIA_SECONDS,
        gop_seconds=GOP_SECONDS,
        profile="baseline",
        fps=30,
        audio=False,
    )
    source = with_stereo_opus(media.path, MEDIA_SECONDS)
    cert_file, key_file = ecdsa_certificate(tmp_path)
    server = TestServer(create_app(settings), host="127.0.0.1", port=0)
    async with TestClient(server) as client:
        watcher = await WsClient.connect(client, issue(client))
        await watcher.ok("subscribe", topic=f"stage:{STAGE}")
        token = issue(client, Role.BROADCASTER, scopes=(f"stage:{STAGE}",))
        options = {
            "authorization": token,
            "cert_file": str(cert_file),
            "key_file": str(key_file),
            "handshake_timeout": "10000",
        }
        began = time.monotonic()
        publisher = await Publisher.start(
            source, str(server.make_url(f"/whip/{STAGE}")), options, tmp_path / "ffmpeg.log"
        )
        try:
            await publisher.event("connected", timeout=15)
            state = await watcher.push("stream.state", timeout=15)
            assert state["state"] == "live", state
            state = await hls_state(watcher)
            report(record_property, "live_after_s", round(time.monotonic() - began, 2))

            # The signed playlist fills with one segment per GOP.
            path = "/" + state["hls_url"].split("://", 1)[1].split("/", 1)[1]
            folder = path.rsplit("/", 1)[0]
            playlist = ""

            async def three_segments() -> bool:
                nonlocal playlist
                response = await client.get(path)
                if response.status != 200:
                    return False
                playlist = await response.text()
                return len(EXTINF.findall(playlist)) >= 3

            await eventually(three_segments, timeout=MEDIA_SECONDS + 10, what="3 HLS segments")
            report(record_property, "three_segments_after_s", round(time.monotonic() - began, 2))
            durations = [float(d) for d in EXTINF.findall(playlist)]
            report(record_property, "extinf", durations)
            for duration in durations[:-1]:
                assert abs(duration - GOP_SECONDS) <= 0.1, playlist
            assert durations[-1] <= GOP_SECONDS + 0.1, playlist
            names = [line for line in playlist.splitlines() if line.endswith(".ts")]
            assert len(names) == len(durations)
            for name in names:
                response = await client.get(f"{folder}/{name}")
                assert response.status == 200, name
                assert response.content_type == "video/mp2t"
                (tmp_path / name).write_bytes(await response.read())
                with av.open(str(tmp_path / name)) as segment:
                    codecs = {s.type: s.codec_context.name for s in segment.streams}
                    assert codecs == {"video": "h264", "audio": "aac"}, (name, codecs)
                    first_video = next(segment.demux(video=0))
                    assert first_video.is_keyframe, f"{name} does not start on a keyframe"

            # FFmpeg closes its muxer at the end of the file: the stage ends.
            muxed = await publisher.event("muxed", timeout=MEDIA_SECONDS + 10)
            closed = await publisher.event("closed", timeout=15)
            report(record_property, "packets", muxed["packets"])
            report(record_property, "mux_seconds", round(muxed["t"] - began, 2))
            report(record_property, "close_seconds", round(closed["t"] - muxed["t"], 2))
            end = await watcher.push("stream.state", timeout=10)
            after_close = time.monotonic() - closed["t"]  # one monotonic clock per machine
            ffmpeg_log = publisher.log.read_text(errors="replace")
            deleted = [
                line for line in ffmpeg_log.splitlines() if "DELETE" in line or "Dispose" in line
            ]
            report(record_property, "end_state", end["state"])
            report(record_property, "end_after_close_s", round(after_close, 2))
            report(record_property, "ffmpeg_delete_log", deleted)
            transport = TRANSPORT.search(ffmpeg_log)
            assert transport is not None, publisher.log_tail()
            report(record_property, "ffmpeg_transport", transport.group(0))
            assert ice_guard.allows(transport.group(1)), transport.group(0)
            media = ice_guard.media_flows()
            report(
                record_property,
                "server_media_flows",
                [f"{f.source}->{f.destination}" for f in media],
            )
            assert media, "hybridcon sent FFmpeg no media the guard saw"
            assert end["state"] in ("ended", "interrupted")

            # The ended playlist keeps the whole file: every GOP a segment, then ENDLIST.
            final = await (await client.get(path)).text()
            final_durations = [float(d) for d in EXTINF.findall(final)]
            report(record_property, "final_extinf", final_durations)
            assert "#EXT-X-ENDLIST" in final
            assert len(final_durations) >= round(MEDIA_SECONDS / GOP_SECONDS) - 1
            for duration in final_durations[:-1]:
                assert abs(duration - GOP_SECONDS) <= 0.1, final
        finally:
            await publisher.stop()
            await watcher.close()
