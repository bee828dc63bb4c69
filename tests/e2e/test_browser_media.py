"""A real browser publishes over WHIP and watches over WHEP: Chromium against the server.

Chromium (Debian's package, headless, fake camera and microphone) is driven over the
DevTools protocol (:mod:`browser`). Its pages come from a second local server, so
every WHIP/WHEP call is cross-origin, as from a broadcaster's or a player's page on
another site: the CORS pre-flights and exposed headers are part of what is tested.

Chromium runs in a network namespace of the test's own (``test_namespace``): it gathers
candidates on every interface it has and cannot be told to keep to loopback, so it gets
one interface, its end of a veth pair, and hybridcon answers on the other end
(``ice_addresses``); both servers listen there too. Before the pages hang up, every
selected candidate pair Chromium reports in ``getStats()`` must be inside that pair's
network (the ICE guard judges them, as it judges hybridcon's own sockets).

One page publishes with ``getUserMedia`` to ``POST /whip/impact`` (H.264 preferred
with ``setCodecPreferences`` when the browser offers it, so HLS gets video); a
watcher on the stage topic sees ``stream.state`` go live. A second page plays the
stage over WHEP in a muted ``<video>`` and must decode more than 30 frames; with
H.264, the HLS playlist must fill with a segment holding the video. A third,
late-joining viewer measures its time from the WHEP ``POST`` to the first decoded
frame (goal: 300 ms; asserted under 2 s). The publisher's page ends with a WHIP
``DELETE`` and the stage goes ``ended``. Measurements are printed (``-s``) and
attached as junit properties.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from browser import Browser, Page, find_chromium
from hybridcon.api.whip import STREAMS
from hybridcon.app import create_app
from hybridcon.core.tokens import Role
from ice_guard import CHROMIUM_SELECTED_PAIRS_JS, IceGuard
from netns import Namespace
from support import WsClient, eventually, hls_state, issue

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    pytest.mark.skipif(find_chromium() is None, reason="needs chromium (make system-deps)"),
]

STAGE = "impact"
FIRST_FRAME_GOAL_MS = 300
FIRST_FRAME_LIMIT_MS = 2000

# The page's helpers; the test calls them with Runtime.evaluate and awaits their promises.
PAGE = (
    """<!doctype html>
<html><head><meta charset="utf-8"><title>hybridcon WHIP/WHEP test page</title></head>
<body>
<script>
"use strict";
const peers = {};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function gathered(pc, limitMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, limitMs);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

async function connected(pc, limitMs) {
  const end = performance.now() + limitMs;
  while (pc.connectionState !== "connected") {
    if (pc.connectionState === "failed" || pc.connectionState === "closed")
      throw new Error("connection " + pc.connectionState);
    if (performance.now() > end) throw new Error("not connected: " + pc.connectionState);
    await sleep(10);
  }
}

async function post(url, token, sdp) {
  const t0 = performance.now();
  const response = await fetch(url, {
    method: "POST",
    headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token},
    body: sdp,
  });
  const body = await response.text();
  if (response.status !== 201) throw new Error(`POST ${url}: ${response.status} ${body}`);
  const location = response.headers.get("Location");
  if (!location) throw new Error("no Location header visible to the page (CORS expose?)");
  return {t0, answer: body, location: new URL(location, url).href,
          etag: response.headers.get("ETag")};
}

// Stats of the one RTP stream of `type` and `kind`, with its codec.
async function rtpStats(pc, type, kind) {
  const report = await pc.getStats();
  let rtp = null;
  report.forEach((s) => { if (s.type === type && s.kind === kind) rtp = s; });
  if (rtp === null) return {frames: 0};
  const codec = rtp.codecId ? report.get(rtp.codecId) : null;
  return {
    codec: codec ? codec.mimeType : null,
    fmtp: codec ? codec.sdpFmtpLine || "" : "",
    frames: (type === "inbound-rtp" ? rtp.framesDecoded : rtp.framesEncoded) || 0,
    width: rtp.frameWidth || 0,
    height: rtp.frameHeight || 0,
    implementation: rtp.decoderImplementation || rtp.encoderImplementation || null,
    packetsLost: rtp.packetsLost,
    pliCount: rtp.pliCount,
  };
}

function h264Rank(codec) {
  const fmtp = codec.sdpFmtpLine || "";
  if (!/packetization-mode=1/.test(fmtp)) return 9;
  if (/profile-level-id=42e01f/.test(fmtp)) return 0;
  if (/profile-level-id=42001f/.test(fmtp)) return 1;
  return 2;
}

async function publish(url, token, preferH264) {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: {width: 640, height: 360, frameRate: 30}, audio: true});
  const pc = new RTCPeerConnection({iceServers: []});
  const video = pc.addTransceiver(stream.getVideoTracks()[0],
                                  {direction: "sendonly", streams: [stream]});
  pc.addTransceiver(stream.getAudioTracks()[0], {direction: "sendonly", streams: [stream]});
  const codecs = RTCRtpSender.getCapabilities("video").codecs;
  const h264 = codecs.filter((c) => c.mimeType === "video/H264" && h264Rank(c) < 9);
  h264.sort((a, b) => h264Rank(a) - h264Rank(b));
  const preferred = preferH264 && h264.length > 0;
  if (preferred) video.setCodecPreferences([...h264, ...codecs.filter((c) => !h264.includes(c))]);
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc, 3000);
  const offer = pc.localDescription.sdp;
  const result = await post(url, token, offer);
  await pc.setRemoteDescription({type: "answer", sdp: result.answer});
  peers.publisher = {pc, stream, location: result.location, token};
  await connected(pc, 10000);
  const offered = offer.split("\\r\\n").filter((l) => l.startsWith("a=rtpmap:"))
    .map((l) => l.split(" ")[1]);
  return {location: result.location, etag: result.etag, h264Offered: h264.length > 0,
          h264Preferred: preferred, offeredRtpmaps: offered};
}

async function sending(frames, limitMs) {
  const pc = peers.publisher.pc;
  const end = performance.now() + limitMs;
  for (;;) {
    const s = await rtpStats(pc, "outbound-rtp", "video");
    if (s.frames >= frames) return s;
    if (performance.now() > end) throw new Error("publisher stuck: " + JSON.stringify(s));
    await sleep(50);
  }
}

async function view(url, token, name) {
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver("video", {direction: "recvonly"});
  pc.addTransceiver("audio", {direction: "recvonly"});
  const element = document.createElement("video");
  element.muted = true;
  element.autoplay = true;
  element.playsInline = true;
  document.body.append(element);
  const media = new MediaStream();
  pc.ontrack = (event) => {
    media.addTrack(event.track);
    if (element.srcObject !== media) element.srcObject = media;
    element.play().catch(() => {});
  };
  const viewer = peers[name] = {pc, element, firstDecodedMs: null, firstRenderedMs: null};
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc, 3000);
  const result = await post(url, token, pc.localDescription.sdp);
  Object.assign(viewer, {location: result.location, token});
  await pc.setRemoteDescription({type: "answer", sdp: result.answer});
  viewer.answerMs = performance.now() - result.t0;
  if ("requestVideoFrameCallback" in element) {
    element.requestVideoFrameCallback(() => {
      viewer.firstRenderedMs = performance.now() - result.t0;
    });
  }
  // Time to the first decoded frame, from just before the POST; polled every 5 ms.
  viewer.watch = (async () => {
    while (pc.connectionState !== "closed") {
      const s = await rtpStats(pc, "inbound-rtp", "video");
      if (s.frames > 0) { viewer.firstDecodedMs = performance.now() - result.t0; return; }
      await sleep(5);
    }
  })();
  return {location: result.location};
}

async function decoded(name, frames, limitMs) {
  const viewer = peers[name];
  const end = performance.now() + limitMs;
  for (;;) {
    const s = await rtpStats(viewer.pc, "inbound-rtp", "video");
    if (s.frames >= frames && viewer.firstDecodedMs !== null) {
      return Object.assign(s, {firstDecodedMs: viewer.firstDecodedMs,
                               firstRenderedMs: viewer.firstRenderedMs,
                               answerMs: viewer.answerMs,
                               connection: viewer.pc.connectionState,
                               playing: !viewer.element.paused,
                               videoWidth: viewer.element.videoWidth});
    }
    if (performance.now() > end)
      throw new Error(`${name} decoded too little: ` + JSON.stringify(s) +
                      " connection " + viewer.pc.connectionState);
    await sleep(50);
  }
}

// DELETE the session, then close: closed first, the server may have dropped the
// session already (404, which a cross-origin page cannot even read: no CORS header).
async function hangUp(name) {
  const peer = peers[name];
  const response = await fetch(peer.location, {
    method: "DELETE", headers: {"Authorization": "Bearer " + peer.token}});
  peer.pc.close();
  if (peer.stream) peer.stream.getTracks().forEach((t) => t.stop());
  return response.status;
}
"""
    + CHROMIUM_SELECTED_PAIRS_JS
    + """
</script>
</body></html>
"""
)


@pytest.fixture
async def page_server(test_namespace: Namespace) -> AsyncIterator[str]:
    """The test page, served from its own origin (another port than the API's), on the
    host's end of the namespace's veth pair."""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    server = TestServer(app, host=test_namespace.host_address, port=0)
    await server.start_server()
    yield str(server.make_url("/"))
    await server.close()


def call(function: str, *args: Any) -> str:
    """A JavaScript call with JSON arguments."""
    return f"{function}({', '.join(json.dumps(a) for a in args)})"


async def evaluate(page: Page, expression: str, timeout: float) -> Any:
    """``page.evaluate`` that shows the page's console when it fails."""
    try:
        return await page.evaluate(expression, timeout=timeout)
    except Exception as exc:
        console = "\n".join(page.console[-20:])
        raise AssertionError(f"{expression} failed: {exc}\nconsole:\n{console}") from exc


def report(record_property: Any, name: str, value: Any) -> None:
    print(f"[browser-media] {name} = {value}")
    record_property(name, value)


async def selected_pairs(page: Page, ice_guard: IceGuard, peers: int) -> list[dict[str, Any]]:
    """Chromium's selected candidate pairs on ``page``, judged by the ICE guard; one per
    peer (bundled), each having carried media."""
    pairs: list[dict[str, Any]] = await evaluate(page, "selectedPairs()", 10)
    ice_guard.check_pairs(pairs, "Chromium")
    assert len(pairs) == peers, pairs
    assert all(p["bytesSent"] > 0 and p["bytesReceived"] > 0 for p in pairs), pairs
    return pairs


async def test_chromium_publishes_over_whip_and_plays_over_whep(
    make_settings: Any,
    page_server: str,
    test_namespace: Namespace,
    ice_guard: IceGuard,
    tmp_path: Path,
    record_property: Any,
) -> None:
    ns = test_namespace
    settings = make_settings(
        hls_segment_seconds=2.0, stream_health_seconds=60, ice_addresses=(ns.host_address,)
    )
    server = TestServer(create_app(settings), host=ns.host_address, port=0)
    # getUserMedia needs a secure context: http:// counts as one only on loopback.
    page_origin = page_server.rstrip("/")
    launch = Browser.launch(
        namespace=ns, flags=(f"--unsafely-treat-insecure-origin-as-secure={page_origin}",)
    )
    async with TestClient(server) as client, launch as browser:
        whip_url = str(server.make_url(f"/whip/{STAGE}"))
        whep_url = str(server.make_url(f"/whep/{STAGE}"))
        watcher = await WsClient.connect(client, issue(client))
        await watcher.ok("subscribe", topic=f"stage:{STAGE}")

        # --- the broadcaster's page publishes --------------------------------------
        publisher = await browser.new_page(page_server)
        token = issue(client, Role.BROADCASTER, scopes=(f"stage:{STAGE}",))
        published = await evaluate(publisher, call("publish", whip_url, token, True), 20)
        assert published["location"].startswith(f"{whip_url}/")
        state = await watcher.push("stream.state", timeout=10)
        assert state["state"] == "live"
        assert state["whep_url"].endswith(f"/whep/{STAGE}")
        sent = await evaluate(publisher, call("sending", 10, 10_000), 15)
        stream = client.server.app[STREAMS].get(STAGE)
        assert stream.publisher is not None
        server_codecs = dict(stream.publisher.codecs)
        report(record_property, "offered_video", published["offeredRtpmaps"])
        report(record_property, "publisher_codec", f"{sent['codec']} {sent['fmtp']}")
        report(record_property, "publisher_encoder", sent["implementation"])
        report(record_property, "server_codecs", server_codecs)
        h264 = published["h264Offered"]
        expected = "video/H264" if h264 else "video/VP8"
        assert sent["codec"] == expected
        assert server_codecs["video"] == expected.split("/")[1].lower()
        assert server_codecs["audio"] == "opus"

        # --- a viewer's page plays it over WHEP ------------------------------------
        viewer = await browser.new_page(page_server)
        viewer_token = issue(client, Role.VIEWER)
        await evaluate(viewer, call("view", whep_url, viewer_token, "first"), 15)
        first = await evaluate(viewer, call("decoded", "first", 31, 15_000), 20)
        report(record_property, "viewer_first", first)
        assert first["frames"] > 30
        assert first["codec"] == sent["codec"]
        assert first["width"] > 0 and first["playing"]

        # --- with H.264, HLS has video ---------------------------------------------
        if h264:
            state = await hls_state(watcher)
            path = "/" + state["hls_url"].split("://", 1)[1].split("/", 1)[1]
            folder = path.rsplit("/", 1)[0]

            async def has_segment() -> bool:
                response = await client.get(path)
                return response.status == 200 and "#EXTINF" in await response.text()

            await eventually(has_segment, timeout=15, what="an HLS segment of the browser")
            playlist = await (await client.get(path)).text()
            name = next(line for line in playlist.splitlines() if line.endswith(".ts"))
            segment = await client.get(f"{folder}/{name}")
            assert segment.status == 200
            (tmp_path / name).write_bytes(await segment.read())
            with av.open(str(tmp_path / name)) as container:
                kinds = {s.type: s.codec_context.name for s in container.streams}
            report(record_property, "hls_segment_streams", kinds)
            assert kinds.get("video") == "h264"
            assert kinds.get("audio") == "aac"
        else:
            report(record_property, "hls", "no video in HLS: Chromium offered only VP8")

        # --- a late joiner's time to the first decoded frame -----------------------
        late = await browser.new_page(page_server)
        await evaluate(late, call("view", whep_url, issue(client), "late"), 15)
        joined = await evaluate(late, call("decoded", "late", 1, 10_000), 15)
        report(record_property, "late_join_first_decoded_ms", round(joined["firstDecodedMs"]))
        report(record_property, "late_join_first_rendered_ms", joined["firstRenderedMs"])
        report(record_property, "late_join_answer_ms", round(joined["answerMs"]))
        report(
            record_property,
            "late_join_within_goal",
            joined["firstDecodedMs"] <= FIRST_FRAME_GOAL_MS,
        )
        assert joined["firstDecodedMs"] < FIRST_FRAME_LIMIT_MS

        # --- Chromium's media stayed inside the namespace's veth pair --------------
        pairs = []
        for page in (publisher, viewer, late):
            pairs += await selected_pairs(page, ice_guard, peers=1)
        report(record_property, "chromium_selected_pairs", pairs)
        assert ice_guard.media_flows(), "hybridcon's side of the media was not seen"

        # --- everyone leaves; the broadcaster ends the stream ----------------------
        assert await evaluate(late, call("hangUp", "late"), 10) == 200
        assert await evaluate(viewer, call("hangUp", "first"), 10) == 200
        await eventually(lambda: not stream.viewers, timeout=5, what="viewers gone")
        assert await evaluate(publisher, call("hangUp", "publisher"), 10) == 200
        assert (await watcher.push("stream.state", timeout=10))["state"] == "ended"
        for page in (late, viewer, publisher):
            await page.close()
        await watcher.close()
