"""The client side of the rooms benchmark, in its own process: workshop participants.

``python -m tests.bench.rooms_agent`` reads one JSON command a line on stdin and answers
each with ``{"id": ..., "result": ...}`` (or ``"error"``) on stdout, as
:mod:`tests.bench.media.agent` does. Everything goes through hybridcon as a browser's
workshop page does: a WebSocket per person (``auth``, ``session.join``; held open, as
leaving it is leaving the session), the session media routes for media
(``POST …/publish``; ``POST …/feeds/{participant}`` then ``PATCH`` with the answer).

* **Cameras** send a live stamped encoder's 640×360 H.264
  (:class:`tests.bench.media.common.StampedEncoderTrack`: CLOCK_MONOTONIC in ms burnt into
  the frame's top rows just before libx264 encodes it; it answers PLIs with an IDR as a
  browser's encoder does) and the clip's Opus.
* **Watchers** subscribe to every camera. ``decode`` watchers decode like a browser and
  read the stamp of every frame (end-to-end latency: encoder input to decoded frame, on
  one machine's monotonic clock) and time their join (WebSocket connect to each camera's
  first decoded frame). ``count`` watchers are real aiortc peers whose RTP stops at the
  DTLS transport, where it is counted (the server does the same work per watcher; the
  client a fraction of a decoder's).

Peers gather host candidates on ``addresses`` (loopback for builtin; the veth pair's
host end for a Janus in its namespace) and the agent runs inside an ICE guard whose
findings the ``ice`` command returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from tests.bench.agents import serve_lines
from tests.bench.media.agent import RtpCount, count_received
from tests.bench.media.common import (
    LoopTrack,
    SharedStart,
    StampedEncoderTrack,
    load_clip,
    read_stamp,
    stamp_age_ms,
)
from tests.ice_guard import IceGuard
from tests.media_fixtures import h264_capabilities

from hybridcon.media.peers import gathering_on

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=60)
SDP = "application/sdp"


@dataclass
class Seen:
    """What one watcher got from one camera."""

    frames: int = 0
    unreadable: int = 0
    first_frame_ms: float | None = None  # after the watcher started joining
    samples: list[float] = field(default_factory=list)  # stamp ages in the window, ms


@dataclass
class Person:
    """A participant: their WebSocket and their peer connections."""

    token: str
    sub: str = ""
    ws: aiohttp.ClientWebSocketResponse | None = None
    drain: asyncio.Task[None] | None = None
    pcs: list[RTCPeerConnection] = field(default_factory=list)
    tracks: list[MediaStreamTrack] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    seen: dict[str, Seen] = field(default_factory=dict)  # camera -> what arrived
    counts: dict[str, RtpCount] = field(default_factory=dict)
    started: float = 0.0


class Agent:
    """Holds the participants and answers the commands."""

    def __init__(self) -> None:
        self.http: aiohttp.ClientSession | None = None
        self.people: dict[str, Person] = {}
        self.guard = IceGuard()
        self.window: tuple[float, float] | None = None

    async def session(self) -> aiohttp.ClientSession:
        if self.http is None:
            self.http = aiohttp.ClientSession(
                timeout=HTTP_TIMEOUT, connector=aiohttp.TCPConnector(limit=0)
            )
        return self.http

    async def _join(self, base: str, session: str, person: Person) -> None:
        """The person's WebSocket: authenticated, joined to the session (admitted: the
        host opened it with ``auto_admit``), then drained in the background."""
        http = await self.session()
        ws = await http.ws_connect(f"{base}/ws")
        await ws.send_json({"type": "auth", "token": person.token})
        hello = await ws.receive_json(timeout=30)
        if hello.get("type") != "auth.ok":
            raise RuntimeError(f"auth: {hello}")
        person.sub = str(hello["user"]["id"])
        await ws.send_json({"id": 1, "type": "session.join", "session": session})
        while True:
            reply = await ws.receive_json(timeout=30)
            if reply.get("id") == 1:
                break
        if reply.get("type") != "result" or reply["data"]["state"] != "admitted":
            raise RuntimeError(f"session.join: {reply}")
        person.ws = ws

        async def drain() -> None:
            with contextlib.suppress(Exception):
                async for _message in ws:
                    pass

        person.drain = asyncio.ensure_future(drain())
        self.people[person.sub] = person

    async def _post(self, url: str, token: str, sdp: str | None) -> tuple[str, str]:
        http = await self.session()
        headers = {"Authorization": f"Bearer {token}"}
        if sdp is not None:
            headers["Content-Type"] = SDP
        async with http.post(url, data=(sdp or "").encode(), headers=headers) as response:
            body = await response.text()
            if response.status != 201:
                raise RuntimeError(f"POST {url}: {response.status} {body[:300]}")
            return body, urljoin(url, response.headers["Location"])

    # --- commands ----------------------------------------------------------------------

    async def join(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """People come into the session (cameras, before the host gives them the floor)."""
        people = [Person(token) for token in cmd["tokens"]]
        for person in people:
            await self._join(cmd["base"], cmd["session"], person)
        return {"subs": [p.sub for p in people]}

    async def publish(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Each of ``subs`` (joined, with the floor) publishes its camera and microphone."""
        clip = load_clip(
            Path(cmd["clip"]["path"]),
            width=cmd["clip"]["width"],
            height=cmd["clip"]["height"],
            fps=cmd["clip"]["fps"],
            gop=cmd["clip"]["gop"],
        )
        for sub in cmd["subs"]:
            person = self.people[sub]
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            video = StampedEncoderTrack(
                width=clip.width,
                height=clip.height,
                fps=clip.fps,
                bitrate=cmd.get("bitrate", 800_000),
                gop_seconds=clip.gop_frames / clip.fps,
            )
            audio = LoopTrack(clip, "audio", SharedStart())
            transceiver = pc.addTransceiver(video, direction="sendonly")
            transceiver.setCodecPreferences(h264_capabilities("42"))
            # aiortc ignores PLIs on its packet path; a browser's encoder answers them.
            transceiver.sender._send_keyframe = video.force_keyframe
            pc.addTransceiver(audio, direction="sendonly")
            with gathering_on(cmd["addresses"]):
                await pc.setLocalDescription(await pc.createOffer())
            answer, _location = await self._post(
                f"{cmd['base']}/api/v1/sessions/{cmd['session']}/publish",
                person.token,
                pc.localDescription.sdp,
            )
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            person.pcs.append(pc)
            person.tracks += [video, audio]
        return {"published": len(cmd["subs"])}

    async def watch(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Watchers join (``concurrency`` at a time) and subscribe to every camera."""
        gate = asyncio.Semaphore(cmd.get("concurrency", 4))
        decode = cmd["mode"] == "decode"

        async def one(token: str) -> None:
            async with gate:
                person = Person(token, started=time.monotonic())
                await self._join(cmd["base"], cmd["session"], person)
                for camera in cmd["cameras"]:
                    await self._subscribe(cmd, person, camera, decode=decode)

        await asyncio.gather(*(one(t) for t in cmd["tokens"]))
        return {"watchers": len(cmd["tokens"])}

    async def _subscribe(
        self, cmd: dict[str, Any], person: Person, camera: str, *, decode: bool
    ) -> None:
        offer, location = await self._post(
            f"{cmd['base']}/api/v1/sessions/{cmd['session']}/feeds/{camera}", person.token, None
        )
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        seen = Seen()

        async def read(track: MediaStreamTrack) -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = await track.recv()
                    if track.kind != "video":
                        continue
                    now = time.monotonic()
                    if seen.first_frame_ms is None:
                        seen.first_frame_ms = (now - person.started) * 1000
                    seen.frames += 1
                    window = self.window
                    if window is not None and window[0] <= now <= window[1]:
                        value = read_stamp(frame)
                        if value is None:
                            seen.unreadable += 1
                        else:
                            seen.samples.append(stamp_age_ms(value))

        if decode:
            person.seen[camera] = seen

            @pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                person.tasks.append(asyncio.ensure_future(read(track)))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        with gathering_on(cmd["addresses"]):
            await pc.setLocalDescription(await pc.createAnswer())
        if not decode:
            person.counts[camera] = RtpCount()
            count_received(pc, person.counts[camera], deliver=False)
        http = await self.session()
        async with http.patch(
            location,
            data=pc.localDescription.sdp.encode(),
            headers={"Authorization": f"Bearer {person.token}", "Content-Type": SDP},
        ) as response:
            if response.status != 204:
                raise RuntimeError(f"PATCH {location}: {response.status} {await response.text()}")
        person.pcs.append(pc)

    async def measure(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Read the stamps of every decoded frame for ``seconds`` from now."""
        start = time.monotonic()
        self.window = (start, start + cmd["seconds"])
        await asyncio.sleep(cmd["seconds"])
        self.window = None
        return await self.report({})

    async def report(self, _cmd: dict[str, Any]) -> dict[str, Any]:
        """Per watcher and camera: frames decoded (or RTP counted), first frame, samples."""
        watchers = {}
        for sub, person in self.people.items():
            if not person.seen and not person.counts:
                continue
            watchers[sub] = {
                "seen": {
                    camera: {
                        "frames": s.frames,
                        "unreadable": s.unreadable,
                        "first_frame_ms": s.first_frame_ms,
                        "samples": s.samples,
                    }
                    for camera, s in person.seen.items()
                },
                "rtp": {camera: c.packets for camera, c in person.counts.items()},
                "states": [pc.connectionState for pc in person.pcs],
            }
        return {"watchers": watchers, "cpu": time.process_time()}

    async def ice(self, _cmd: dict[str, Any]) -> dict[str, Any]:
        """Where this agent's peers sent: ``stray`` flows outside the allowed networks."""
        return {"stray": self.guard.stray(), "media_flows": len(self.guard.media_flows())}

    async def close(self) -> None:
        for person in self.people.values():
            for track in person.tracks:
                track.stop()
            for pc in person.pcs:
                await pc.close()
            for task in person.tasks:
                task.cancel()
            await asyncio.gather(*person.tasks, return_exceptions=True)
            if person.ws is not None:
                await person.ws.close()
            if person.drain is not None:
                person.drain.cancel()
        if self.http is not None:
            await self.http.close()


async def serve(allow: list[str]) -> None:
    import ipaddress

    import structlog

    from hybridcon.media import passthrough

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    passthrough.install()
    agent = Agent()
    for network in allow:
        agent.guard.allow(ipaddress.ip_network(network))
    with agent.guard.watching():
        await _serve(agent)


async def _serve(agent: Agent) -> None:
    handlers = {
        "join": agent.join,
        "publish": agent.publish,
        "watch": agent.watch,
        "measure": agent.measure,
        "report": agent.report,
        "ice": agent.ice,
    }
    await serve_lines(handlers, agent.close)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1:]))
