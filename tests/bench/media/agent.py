"""The client side of the media benchmarks, in its own process: WHIP publishers, WHEP
viewers that count or decode, latency and time-to-first-frame probes.

``python -m tests.bench.media.agent`` reads one JSON command a line on stdin and answers
each with ``{"id": ..., "result": ...}`` (or ``"error"``) on stdout; logs go to stderr.
Commands run concurrently, each in its own task. Everything speaks to the server over
HTTP (WHIP/WHEP) and WebRTC on loopback, as a browser or OBS would: every peer gathers
its candidates on loopback only (``tests.media_fixtures.ICE_ADDRESSES``, the server's
setting too), and the agent runs inside an ICE guard (``tests.ice_guard``) whose
findings the ``ice`` command returns; the runner fails the benchmark on any stray flow.

Load viewers come in two kinds:

* ``count`` (the default): a real aiortc peer whose RTP stops at the DTLS transport,
  where it is counted: no jitter buffer, no depacketising, no decoder, hence no NACKs or
  PLIs either. It costs the client a fraction of a full viewer, which is what lets a
  2-core box attach dozens of them; the server does exactly the same work per viewer.
* ``passthrough``: aiortc's whole receive path up to reassembled frames (jitter buffer,
  NACKs), not decoded (``tests.media_fixtures.viewer_peer(decode=False)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from tests.bench.agents import serve_lines
from tests.bench.media.common import (
    LoopTrack,
    SharedStart,
    StampedEncoderTrack,
    load_clip,
    read_stamp,
    stamp_age_ms,
    udp_errors,
)
from tests.ice_guard import IceGuard
from tests.media_fixtures import ICE_ADDRESSES

from hybridcon.media.peers import gathering_on

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)
FIRST_FRAME_TIMEOUT = 10.0


@dataclass
class RtpCount:
    """RTP packets and bytes seen at one peer's DTLS transport(s)."""

    packets: int = 0
    bytes: int = 0


@dataclass
class Peer:
    """One of this agent's connections to the server."""

    pc: RTCPeerConnection
    location: str
    token: str
    count: RtpCount = field(default_factory=RtpCount)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    tracks: list[Any] = field(default_factory=list)


def _transports(pc: RTCPeerConnection) -> list[Any]:
    seen: dict[int, Any] = {}
    for transceiver in pc.getTransceivers():
        for transport in (transceiver.receiver.transport, transceiver.sender.transport):
            if transport is not None:
                seen[id(transport)] = transport
    return list(seen.values())


def count_received(pc: RTCPeerConnection, count: RtpCount, *, deliver: bool) -> None:
    """Count the RTP the peer receives; with ``deliver=False`` drop it there."""
    for transport in _transports(pc):
        original = transport._handle_rtp_data

        async def handle(data: bytes, arrival_time_ms: int, _original: Any = original) -> None:
            count.packets += 1
            count.bytes += len(data)
            if deliver:
                await _original(data, arrival_time_ms=arrival_time_ms)

        transport._handle_rtp_data = handle


def count_sent(pc: RTCPeerConnection, count: RtpCount) -> None:
    """Count the RTP (and RTX) the peer sends."""
    for transport in _transports(pc):
        original = transport._send_rtp

        async def send(data: bytes, _original: Any = original) -> None:
            count.packets += 1
            count.bytes += len(data)
            await _original(data)

        transport._send_rtp = send


class Agent:
    """Holds the peers and answers the commands."""

    def __init__(self) -> None:
        self.http: aiohttp.ClientSession | None = None
        self.publishers: dict[str, Peer] = {}
        self.viewers: list[Peer] = []
        self.guard = IceGuard()

    async def session(self) -> aiohttp.ClientSession:
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=HTTP_TIMEOUT)
        return self.http

    async def post(self, url: str, token: str, offer: str) -> tuple[str, str]:
        """WHIP/WHEP POST: the answer and the session URL."""
        http = await self.session()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}
        async with http.post(url, data=offer.encode(), headers=headers) as response:
            body = await response.text()
            if response.status != 201:
                raise RuntimeError(f"POST {url}: {response.status} {body[:200]}")
            return body, urljoin(url, response.headers["Location"])

    async def delete(self, peer: Peer) -> None:
        http = await self.session()
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with http.delete(
                peer.location, headers={"Authorization": f"Bearer {peer.token}"}
            ):
                pass

    async def close_peer(self, peer: Peer) -> None:
        await self.delete(peer)
        for track in peer.tracks:
            track.stop()
        await peer.pc.close()
        for task in peer.tasks:
            task.cancel()
        await asyncio.gather(*peer.tasks, return_exceptions=True)

    # --- commands ----------------------------------------------------------------------

    async def publish(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """A WHIP publisher: the looped clip (``source: clip``, no encoder) or a live
        stamped encoder for video (``source: live``) with the clip's audio."""
        clip = load_clip(
            Path(cmd["clip"]["path"]),
            width=cmd["clip"]["width"],
            height=cmd["clip"]["height"],
            fps=cmd["clip"]["fps"],
            gop=cmd["clip"]["gop"],
        )
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        start = SharedStart()
        video: MediaStreamTrack
        if cmd.get("source") == "live":
            video = StampedEncoderTrack(
                width=clip.width,
                height=clip.height,
                fps=clip.fps,
                bitrate=cmd.get("bitrate", 2_500_000),
                gop_seconds=clip.gop_frames / clip.fps,
            )
        else:
            video = LoopTrack(clip, "video", start)
        audio = LoopTrack(clip, "audio", start)
        video_sender = pc.addTransceiver(video, direction="sendonly").sender
        pc.addTransceiver(audio, direction="sendonly")
        if isinstance(video, StampedEncoderTrack):
            # aiortc ignores PLIs on its packet path; a browser's encoder answers them.
            video_sender._send_keyframe = video.force_keyframe
        with gathering_on(ICE_ADDRESSES):
            await pc.setLocalDescription(await pc.createOffer())
        url = f"{cmd['base']}/whip/{cmd['stage']}"
        answer, location = await self.post(url, cmd["token"], pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        peer = Peer(pc, location, cmd["token"], tracks=[video, audio])
        count_sent(pc, peer.count)
        self.publishers[cmd["stage"]] = peer
        return {"location": location}

    async def unpublish(self, cmd: dict[str, Any]) -> dict[str, Any]:
        stages = [cmd["stage"]] if cmd.get("stage") else list(self.publishers)
        for stage in stages:
            peer = self.publishers.pop(stage, None)
            if peer is not None:
                await self.close_peer(peer)
        return {"closed": stages}

    async def _load_viewer(self, base: str, stage: str, token: str, mode: str) -> Peer:
        if mode == "passthrough":
            from tests.media_fixtures import viewer_peer

            pc, watch = viewer_peer(decode=False)
            tasks = watch.tasks
        else:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            tasks = []
        with gathering_on(ICE_ADDRESSES):
            await pc.setLocalDescription(await pc.createOffer())
        answer, location = await self.post(f"{base}/whep/{stage}", token, pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        peer = Peer(pc, location, token, tasks=tasks)
        count_received(pc, peer.count, deliver=mode == "passthrough")
        return peer

    async def view(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Add ``count`` load viewers (a few connecting at a time)."""
        gate = asyncio.Semaphore(4)

        async def one() -> Peer:
            async with gate:
                return await self._load_viewer(
                    cmd["base"], cmd["stage"], cmd["token"], cmd.get("mode", "count")
                )

        peers = await asyncio.gather(*(one() for _ in range(cmd["count"])))
        self.viewers.extend(peers)
        return {"viewers": len(self.viewers)}

    async def unview(self, _cmd: dict[str, Any]) -> dict[str, Any]:
        viewers, self.viewers = self.viewers, []
        gate = asyncio.Semaphore(8)

        async def one(peer: Peer) -> None:
            async with gate:
                await self.close_peer(peer)

        await asyncio.gather(*(one(p) for p in viewers))
        return {"closed": len(viewers)}

    async def ice(self, _cmd: dict[str, Any]) -> dict[str, Any]:
        """Where this agent's peers sent: the flows outside loopback (``stray``, which
        must be empty) and how many flows carried media."""
        return {"stray": self.guard.stray(), "media_flows": len(self.guard.media_flows())}

    async def counts(self, _cmd: dict[str, Any]) -> dict[str, Any]:
        return {
            "viewers": [[p.count.packets, p.count.bytes] for p in self.viewers],
            "publishers": {s: [p.count.packets, p.count.bytes] for s, p in self.publishers.items()},
            "states": [p.pc.connectionState for p in self.viewers],
            "keyframe_requests": {
                s: t.keyframe_requests
                for s, p in self.publishers.items()
                for t in p.tracks
                if isinstance(t, StampedEncoderTrack)
            },
            "cpu": time.process_time(),
        }

    async def _decoding_viewer(
        self, base: str, stage: str, token: str
    ) -> tuple[RTCPeerConnection, str, asyncio.Queue[tuple[float, av.VideoFrame]], list[Any]]:
        """A viewer that decodes like a browser; its frames go to a queue with the
        monotonic time ``recv()`` returned them."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        frames: asyncio.Queue[tuple[float, av.VideoFrame]] = asyncio.Queue()
        tasks: list[Any] = []

        async def read(track: MediaStreamTrack) -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    item = await track.recv()
                    if track.kind == "video":
                        frames.put_nowait((time.monotonic(), item))

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            tasks.append(asyncio.ensure_future(read(track)))

        with gathering_on(ICE_ADDRESSES):
            await pc.setLocalDescription(await pc.createOffer())
        return pc, pc.localDescription.sdp, frames, tasks

    async def latency(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Encode-to-decode latency from the stamps in the frames one decoding viewer gets,
        over ``seconds`` after ``warmup`` seconds of playing."""
        pc, offer, frames, tasks = await self._decoding_viewer(
            cmd["base"], cmd["stage"], cmd["token"]
        )
        answer, location = await self.post(
            f"{cmd['base']}/whep/{cmd['stage']}", cmd["token"], offer
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        peer = Peer(pc, location, cmd["token"], tasks=tasks)
        samples: list[float] = []
        unreadable = 0
        decoded = 0
        try:
            first, _ = await asyncio.wait_for(frames.get(), FIRST_FRAME_TIMEOUT)
            start = first + cmd.get("warmup", 3.0)
            end = start + cmd["seconds"]
            cpu_start: float | None = None
            while (now := time.monotonic()) < end:
                try:
                    at, frame = await asyncio.wait_for(frames.get(), max(0.05, end - now))
                except TimeoutError:
                    continue
                if at < start:
                    continue
                if cpu_start is None:
                    cpu_start = time.process_time()
                decoded += 1
                value = read_stamp(frame)
                if value is None:
                    unreadable += 1
                    continue
                samples.append(stamp_age_ms(value) - (time.monotonic() - at) * 1000)
            cpu = time.process_time() - (cpu_start or time.process_time())
        finally:
            await self.close_peer(peer)
        return {
            "samples": samples,
            "decoded": decoded,
            "unreadable": unreadable,
            "seconds": cmd["seconds"],
            "agent_cpu_s": cpu,
        }

    async def ttff(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """``joins`` late viewers one after another: POST -> answer -> connected -> first
        decoded frame, and how old that frame was (its stamp)."""
        rng = random.Random(cmd.get("seed", 1))
        live_ms = cmd.get("live_ms", 150.0)
        results = []
        for _ in range(cmd["joins"]):
            await asyncio.sleep(rng.uniform(0.3, 2.3))  # land anywhere in the GOP
            pc, offer, frames, tasks = await self._decoding_viewer(
                cmd["base"], cmd["stage"], cmd["token"]
            )
            states: dict[str, float] = {}

            @pc.on("connectionstatechange")
            def changed(pc: RTCPeerConnection = pc, states: dict[str, float] = states) -> None:
                states.setdefault(pc.connectionState, time.monotonic())

            result: dict[str, Any] = {}
            udp = udp_errors()
            posted = time.monotonic()
            answer, location = await self.post(
                f"{cmd['base']}/whep/{cmd['stage']}", cmd["token"], offer
            )
            result["answer_ms"] = (time.monotonic() - posted) * 1000
            peer = Peer(pc, location, cmd["token"], tasks=tasks)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
                at, frame = await asyncio.wait_for(frames.get(), FIRST_FRAME_TIMEOUT)
                result["first_frame_ms"] = (at - posted) * 1000
                if "connected" in states:
                    result["connected_ms"] = (states["connected"] - posted) * 1000
                value = read_stamp(frame)
                result["first_frame_age_ms"] = (
                    None if value is None else stamp_age_ms(value) - (time.monotonic() - at) * 1000
                )
                # How long until a frame is no older than live_ms (the GOP burst played out).
                result["live_ms"] = None
                result["frames_to_live"] = 1
                trace = [
                    (round(result["first_frame_ms"]), round(result["first_frame_age_ms"] or -1))
                ]
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline:
                    try:
                        at, frame = await asyncio.wait_for(frames.get(), 1.0)
                    except TimeoutError:
                        continue
                    result["frames_to_live"] += 1
                    value = read_stamp(frame)
                    if value is None:
                        continue
                    age = stamp_age_ms(value) - (time.monotonic() - at) * 1000
                    trace.append((round((at - posted) * 1000), round(age)))
                    if age <= live_ms:
                        result["live_ms"] = (at - posted) * 1000
                        break
                result["trace"] = trace
                result["udp_rcvbuf_errors"] = udp_errors()["RcvbufErrors"] - udp["RcvbufErrors"]
            except TimeoutError:
                result["first_frame_ms"] = None
            finally:
                await self.close_peer(peer)
            results.append(result)
        return {"joins": results}


async def serve() -> None:
    import structlog

    from hybridcon.media import passthrough

    # stdout carries the protocol; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    passthrough.install()
    agent = Agent()
    with agent.guard.watching():
        await _serve(agent)


async def _serve(agent: Agent) -> None:
    async def close() -> None:
        await agent.unview({})
        await agent.unpublish({})
        if agent.http is not None:
            await agent.http.close()

    handlers = {
        "publish": agent.publish,
        "unpublish": agent.unpublish,
        "view": agent.view,
        "unview": agent.unview,
        "counts": agent.counts,
        "latency": agent.latency,
        "ttff": agent.ttff,
        "ice": agent.ice,
    }
    await serve_lines(handlers, close)


if __name__ == "__main__":
    asyncio.run(serve())
