"""WHIP ingest and WHEP playback over real HTTP with real aiortc peers, and signed HLS.

The publisher is an aiortc peer sending pre-encoded H.264 + Opus made at test time; the
viewer is an aiortc peer that decodes, as a browser would. Chromium and FFmpeg's WHIP
muxer are exercised in tests/e2e.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hybridcon.api.whip import STREAMS
from hybridcon.app import create_app
from hybridcon.core.tokens import Role
from media_fixtures import make_media, make_offer, publisher_peer, take_answer, viewer_peer
from support import WsClient, bearer, eventually, hls_state, issue, next_state

SDP = {"Content-Type": "application/sdp"}


@pytest.fixture
async def live(make_settings, tmp_path):
    """A server with tight health and cap settings, and test media."""
    settings = make_settings(
        stream_health_seconds=1,
        whep_max_viewers=1,
        stream_stall_seconds=1.5,
        hls_segment_seconds=1.0,
    )
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client:
        media = make_media(tmp_path, seconds=6.0, gop_seconds=1.0)
        yield client, media, settings


async def publish(client, media, token: str, stage: str = "impact"):
    pc, player = publisher_peer(media)
    resp = await client.post(
        f"/whip/{stage}", data=await make_offer(pc), headers={**SDP, **bearer(token)}
    )
    return pc, player, resp


async def test_whip_conformance_without_media(live):
    client, _media, _ = live
    resp = await client.post("/whip/impact", data="v=0\r\n", headers=SDP)
    assert resp.status == 401
    resp = await client.post(
        "/whip/impact", data="v=0\r\n", headers={**SDP, **bearer(issue(client, Role.VIEWER))}
    )
    assert resp.status == 403
    token = issue(client, Role.BROADCASTER, scopes=("stage:impact",))
    resp = await client.post("/whip/plenary", data="v=0\r\n", headers={**SDP, **bearer(token)})
    assert resp.status == 403  # another stage
    resp = await client.post("/whip/impact", data="v=0", headers=bearer(token))
    assert resp.status == 415
    resp = await client.post(
        "/whip/filmzaal", data="v=0\r\n", headers={**SDP, **bearer(issue(client, Role.ORGANISER))}
    )
    assert resp.status == 404  # the film room is not streamed
    resp = await client.post("/whip/impact", data="not sdp", headers={**SDP, **bearer(token)})
    assert resp.status == 400
    resp = await client.options("/whip/impact")
    assert resp.status == 204
    assert resp.headers["Accept-Post"] == "application/sdp"
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    resp = await client.post(
        "/whep/impact", data="v=0\r\n", headers={**SDP, **bearer(issue(client))}
    )
    assert resp.status == 409  # not live


@pytest.mark.parametrize("body", ["hello", "not sdp", "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n", ""])
async def test_text_that_is_not_sdp_is_called_that(live, body):
    client, _media, _ = live
    publisher = bearer(issue(client, Role.BROADCASTER, scopes=("stage:impact",)))
    for path, headers in (("/whip/impact", publisher), ("/whep/impact", bearer(issue(client)))):
        resp = await client.post(path, data=body, headers={**SDP, **headers})
        assert resp.status == 400, path
        error = (await resp.json())["error"]
        assert error["code"] == "invalid"
        assert error["message"].startswith("the offer is not valid SDP"), (path, error)


async def test_a_stage_goes_live_viewers_watch_and_it_ends(live):
    client, media, settings = live
    watcher = await WsClient.connect(client, issue(client, Role.VIEWER))
    snap = await watcher.ok("subscribe", topic="stage:impact")
    assert snap["snapshot"]["stream"] == {
        "state": "scheduled",
        "hls_url": None,
        "whep_url": None,
        "audio_only": False,
    }
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR))
    await mod.ok("subscribe", topic="mod:stage:impact")

    token = issue(client, Role.BROADCASTER, scopes=("stage:impact",))
    pc, player, resp = await publish(client, media, token)
    assert resp.status == 201, await resp.text()
    location = resp.headers["Location"]
    assert location.startswith("/whip/impact/")
    etag = resp.headers["ETag"]
    await take_answer(pc, await resp.text())

    state = await watcher.push("stream.state", timeout=10)
    assert state["state"] == "live"
    assert state["whep_url"].endswith("/whep/impact")
    # HLS is offered once its playlist has a segment, and then it plays at once.
    assert state["hls_url"] is None
    state = await hls_state(watcher)
    assert state["state"] == "live" and state["whep_url"].endswith("/whep/impact")
    hls = state["hls_url"]
    assert "/hls/impact/" in hls and hls.endswith("/index.m3u8")
    playlist = await client.get("/" + hls.split("://", 1)[1].split("/", 1)[1])
    assert playlist.status == 200 and "#EXTINF:" in await playlist.text()

    # A second publisher is refused; trickle is accepted; ICE restart is not.
    other_pc, _, other = await publish(client, media, token)
    assert other.status == 409
    await other_pc.close()
    frag = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
    resp = await client.patch(
        location,
        data=frag,
        headers={
            "Content-Type": "application/trickle-ice-sdpfrag",
            "If-Match": etag,
            **bearer(token),
        },
    )
    assert resp.status == 204
    resp = await client.patch(
        location,
        data="a=ice-ufrag:abcd\r\na=ice-pwd:efgh\r\n",
        headers={
            "Content-Type": "application/trickle-ice-sdpfrag",
            "If-Match": "*",
            **bearer(token),
        },
    )
    assert resp.status == 422

    # A WHEP viewer decodes frames; the next one is over the cap and sent to HLS.
    vpc, watch = viewer_peer()
    resp = await client.post(
        "/whep/impact", data=await make_offer(vpc), headers={**SDP, **bearer(issue(client))}
    )
    assert resp.status == 201, await resp.text()
    await take_answer(vpc, await resp.text())
    await asyncio.wait_for(watch.enough.wait(), 15)
    assert (media.width, media.height) in watch.sizes
    extra_pc, _ = viewer_peer()
    resp = await client.post(
        "/whep/impact", data=await make_offer(extra_pc), headers={**SDP, **bearer(issue(client))}
    )
    assert resp.status == 503
    assert "/hls/impact/" in (await resp.json())["hls_url"]
    await extra_pc.close()

    # HLS: the playlist fills with segments behind the signed link.
    path = hls.split("://", 1)[1].split("/", 1)[1]

    async def playlist_has_segments() -> bool:
        r = await client.get(f"/{path}")
        return r.status == 200 and (await r.text()).count("#EXTINF") >= 2

    await eventually(playlist_has_segments, timeout=20, what="two HLS segments")
    playlist = await (await client.get(f"/{path}")).text()
    assert "#EXT-X-PROGRAM-DATE-TIME" in playlist
    segment = next(line for line in playlist.splitlines() if line.endswith(".ts"))
    seg = await client.get(f"/{path.rsplit('/', 1)[0]}/{segment}")
    assert seg.status == 200 and seg.content_type == "video/mp2t"
    tampered = path.replace("/impact/", "/plenary/")
    assert (await client.get(f"/{tampered}")).status == 403

    # Moderators see the ingest's health: in their snapshot and pushed.
    mod_snap = await (await WsClient.connect(client, issue(client, Role.MODERATOR))).ok(
        "subscribe", topic="mod:stage:impact"
    )
    assert mod_snap["snapshot"]["stream"]["state"] == "live"
    assert mod_snap["snapshot"]["stream"]["health"]["video"]["codec"] == "h264"
    health = await mod.push("stream.health", timeout=10)
    assert health["stage"] == "impact" and health["video"]["fps"] > 0
    assert health["problems"] == [] and health["probe"]["black"] is False

    # The publisher ends the stream: everyone hears it, a recording exists.
    resp = await client.delete(location, headers=bearer(token))
    assert resp.status == 200
    assert (await watcher.push("stream.state", timeout=10))["state"] == "ended"
    recordings = list((settings.recordings_dir / "impact").glob("impact-*"))
    assert recordings and recordings[0].stat().st_size > 10_000
    for peer in (pc, vpc):
        await peer.close()
    player.video and player.video.stop()
    await watcher.close()
    await mod.close()


async def test_a_publisher_that_drops_interrupts_the_stage_and_comes_back(live):
    client, media, _ = live
    watcher = await WsClient.connect(client, issue(client))
    await watcher.ok("subscribe", topic="stage:impact")
    token = issue(client, Role.BROADCASTER, scopes=("stage:impact",))
    pc, _, resp = await publish(client, media, token)
    await take_answer(pc, await resp.text())
    assert (await next_state(watcher, timeout=10))["state"] == "live"
    hub = client.server.app[STREAMS].get("impact").hub
    await eventually(lambda: hub.stats.video.packets > 30, timeout=10, what="media arriving")
    await pc.close()  # gone without a DELETE
    assert (await next_state(watcher, timeout=20))["state"] == "interrupted"
    pc2, _, resp = await publish(client, media, token)
    assert resp.status == 201
    await take_answer(pc2, await resp.text())
    assert (await next_state(watcher, timeout=10))["state"] == "live"

    # Revoking the broadcaster's token takes it off the air.
    jti = services_jti(token)
    resp = await client.post(
        "/api/v1/revocations", json={"jti": jti}, headers=bearer(issue(client, Role.ORGANISER))
    )
    assert resp.status == 201
    assert (await next_state(watcher, timeout=10))["state"] == "interrupted"
    # An organiser ends a stage whose publisher will not come back.
    resp = await client.delete("/whip/impact", headers=bearer(issue(client, Role.ORGANISER)))
    assert resp.status == 200
    assert (await next_state(watcher, timeout=10))["state"] == "ended"
    resp = await client.delete("/whip/impact", headers=bearer(issue(client, Role.BROADCASTER)))
    assert resp.status == 403
    await pc2.close()
    await watcher.close()


def services_jti(token: str) -> str:
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


async def test_the_radio_is_audio_in_and_aac_hls_out(live, tmp_path):
    import av
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.contrib.media import MediaPlayer

    client, _media, _ = live
    path = tmp_path / "radio.webm"
    out = av.open(str(path), "w", format="webm")
    sound = out.add_stream("libopus", rate=48000)
    sound.layout = "mono"
    tone = av.open("sine=frequency=330:sample_rate=48000:duration=5", format="lavfi")
    for frame in tone.decode(audio=0):
        out.mux(sound.encode(frame))
    out.mux(sound.encode(None))
    tone.close()
    out.close()

    watcher = await WsClient.connect(client, issue(client))
    await watcher.ok("subscribe", topic="stage:radio")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    player = MediaPlayer(str(path), decode=False)
    pc.addTransceiver(player.audio, direction="sendonly")
    token = issue(client, Role.BROADCASTER, scopes=("stage:radio",))
    resp = await client.post(
        "/whip/radio", data=await make_offer(pc), headers={**SDP, **bearer(token)}
    )
    assert resp.status == 201, await resp.text()
    await take_answer(pc, await resp.text())
    state = await hls_state(watcher)
    assert state["state"] == "live" and state["audio_only"] is True
    assert state["whep_url"] is None
    path_part = state["hls_url"].split("://", 1)[1].split("/", 1)[1]

    async def segments() -> bool:
        r = await client.get(f"/{path_part}")
        return r.status == 200 and (await r.text()).count("#EXTINF") >= 2

    await eventually(segments, timeout=20, what="two radio segments")
    playlist = await (await client.get(f"/{path_part}")).text()
    name = next(line for line in playlist.splitlines() if not line.startswith("#") and line)
    seg = await client.get(f"/{path_part.rsplit('/', 1)[0]}/{name}")
    data = await seg.read()
    probe_path = tmp_path / name
    probe_path.write_bytes(data)
    container = av.open(str(probe_path))
    assert [s.codec_context.name for s in container.streams] == ["aac"]
    assert not any(s.type == "video" for s in container.streams)
    container.close()
    await pc.close()
    await watcher.close()


async def test_errors_carry_cors_headers_so_pages_can_read_them(live):
    client, _media, _ = live
    resp = await client.post(
        "/whip/impact",
        data="v=0\r\n",
        headers={**SDP, "Origin": "https://regie.example.org", "Authorization": "Bearer nonsense"},
    )
    assert resp.status == 401
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await client.post(
        "/whep/impact", data="v=0\r\n", headers={**SDP, **bearer(issue(client))}
    )
    assert resp.status == 409
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
