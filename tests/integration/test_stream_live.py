"""A stage goes live at its publisher's first media, and /metrics follows the streams.

Real HTTP, a real aiortc publisher sending pre-encoded H.264 + Opus (tests/media_fixtures),
real aiortc viewers; /metrics is scraped and parsed as Prometheus would.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiortc import RTCConfiguration, RTCPeerConnection
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from hybridcon.api.whip import STREAMS
from hybridcon.app import create_app
from hybridcon.core.streams import StreamState
from hybridcon.core.tokens import Role
from media_fixtures import make_media, make_offer, publisher_peer, take_answer, viewer_peer
from support import WsClient, bearer, eventually, hls_state, issue, next_state, services_of

SDP = {"Content-Type": "application/sdp"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def server(make_settings, tmp_path):
    settings = make_settings(
        stream_health_seconds=1,
        stream_stall_seconds=1.5,
        whip_first_media_seconds=1.5,
        whep_max_viewers=1,
        hls_segment_seconds=1.0,
    )
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client:
        yield client, make_media(tmp_path, seconds=8.0, gop_seconds=1.0)


async def scrape(client) -> Samples:
    resp = await client.get("/metrics")
    assert resp.status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def publish(client, pc) -> str:
    token = issue(client, Role.BROADCASTER, scopes=("stage:impact",))
    resp = await client.post(
        "/whip/impact", data=await make_offer(pc), headers={**SDP, **bearer(token)}
    )
    assert resp.status == 201, await resp.text()
    return await resp.text()


def silent_publisher() -> RTCPeerConnection:
    """Offers audio and video, but never takes the answer: ICE never connects."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="sendonly")
    pc.addTransceiver("audio", direction="sendonly")
    return pc


async def test_the_stage_goes_live_at_the_first_media_not_at_the_answer(server):
    client, media = server
    watcher = await WsClient.connect(client, issue(client))
    await watcher.ok("subscribe", topic="stage:impact")
    stream = client.server.app[STREAMS].get("impact")

    pc, player = publisher_peer(media)
    with capture_logs() as logs:
        answer = await publish(client, pc)
        # Answered, but nothing has arrived: the stage is not live, viewers are refused.
        assert stream.state is StreamState.SCHEDULED
        assert stream.publisher is not None and stream.media_at is None
        early, _ = viewer_peer()
        resp = await client.post(
            "/whep/impact", data=await make_offer(early), headers={**SDP, **bearer(issue(client))}
        )
        assert resp.status == 409
        await early.close()
        samples = await scrape(client)
        assert value(samples, "hybridcon_stream_state", stage="impact", state="scheduled") == 1
        assert value(samples, "hybridcon_stream_publisher_sessions_total", stage="impact") == 1

        await take_answer(pc, answer)
        state = await watcher.push("stream.state", timeout=10)
        assert state["state"] == "live" and state["hls_url"] is None  # no segment yet
        state = await hls_state(watcher)
        assert state["state"] == "live" and "/hls/impact/" in state["hls_url"]
    assert stream.media_at is not None
    first = [e for e in logs if e["event"] == "stream_first_media"]
    assert len(first) == 1 and first[0]["stage"] == "impact" and first[0]["seconds"] > 0
    live_at = next(i for i, e in enumerate(logs) if e["event"] == "stream_state")
    assert logs.index(first[0]) < live_at
    await pc.close()
    if player.video is not None:
        player.video.stop()
    await watcher.close()


async def test_a_publisher_that_sends_no_media_is_closed_and_never_makes_the_stage_live(server):
    client, media = server
    watcher = await WsClient.connect(client, issue(client))
    await watcher.ok("subscribe", topic="stage:impact")
    stream = client.server.app[STREAMS].get("impact")

    silent = silent_publisher()
    with capture_logs() as logs:
        await publish(client, silent)
        assert stream.publisher is not None
        await eventually(lambda: stream.publisher is None, timeout=10, what="publisher closed")
    assert stream.state is StreamState.SCHEDULED
    closed = [e for e in logs if e["event"] == "stream_no_media"]
    assert len(closed) == 1 and closed[0]["stage"] == "impact"
    assert closed[0]["seconds"] > 1.5 and "publisher closed" in closed[0]["reason"]
    assert not any(e["event"] == "stream_state" for e in logs)

    samples = await scrape(client)
    assert value(samples, "hybridcon_stream_stalls_total", stage="impact", reason="no_media") == 1
    assert value(samples, "hybridcon_stream_state", stage="impact", state="scheduled") == 1

    # The stage is free again, and the first state push the watcher gets is the next
    # publisher's "live": the silent one pushed nothing.
    pc, player = publisher_peer(media)
    await take_answer(pc, await publish(client, pc))
    assert (await watcher.push("stream.state", timeout=10))["state"] == "live"
    # The engagement log has one start: the writer keeps order, so a start logged for
    # the silent publisher would be stored no later than this one.
    pool = services_of(client).db()

    async def starts() -> list[str]:
        rows = await pool.fetch(
            "SELECT data FROM engagement_events WHERE kind = 'stream_started' "
            "AND topic = 'stage:impact'"
        )
        return [r["data"] for r in rows]

    await eventually(starts, timeout=10, what="stream_started stored")
    assert len(await starts()) == 1
    await pc.close()
    await silent.close()
    if player.video is not None:
        player.video.stop()
    await watcher.close()


async def test_metrics_follow_a_stage_from_live_to_interrupted(server):
    client, media = server
    stage = {"stage": "impact"}
    before = await scrape(client)
    # Every streamed stage has its series from the start (an alert can rely on them).
    for name in (
        "hybridcon_stream_publisher_sessions_total",
        "hybridcon_stream_whep_sessions_total",
        "hybridcon_stream_hls_segments_total",
        "hybridcon_stream_keyframe_requests_total",
        "hybridcon_stream_interruptions_total",
        "hybridcon_stream_whep_viewers",
        "hybridcon_stream_ingest_loss_ratio",
    ):
        assert value(before, name, stage="radio") == 0, name
    assert value(before, "hybridcon_stream_state", stage="radio", state="scheduled") == 1
    assert value(before, "hybridcon_stream_state", stage="radio", state="live") == 0

    pc, player = publisher_peer(media)
    await take_answer(pc, await publish(client, pc))
    streams = client.server.app[STREAMS]
    stream = streams.get("impact")
    await eventually(lambda: stream.state is StreamState.LIVE, timeout=10, what="live")

    async def moving() -> bool:
        s = await scrape(client)
        return (
            value(s, "hybridcon_stream_ingest_frames_total", kind="video", **stage) > 30
            and value(s, "hybridcon_stream_ingest_frames_total", kind="audio", **stage) > 30
            and value(s, "hybridcon_stream_hls_segments_total", **stage) >= 1
            and value(s, "hybridcon_stream_keyframe_interval_seconds", **stage) > 0
        )

    await eventually(moving, timeout=20, what="stream series moving")
    s = await scrape(client)
    assert value(s, "hybridcon_stream_state", state="live", **stage) == 1
    assert value(s, "hybridcon_stream_state", state="scheduled", **stage) == 0
    assert value(s, "hybridcon_stream_publisher", **stage) == 1
    assert value(s, "hybridcon_stream_ingest_bitrate_bps", kind="video", **stage) > 100_000
    assert value(s, "hybridcon_stream_ingest_fps", kind="video", **stage) > 10
    # The media has a keyframe every second (30 frames at 30 fps).
    assert value(s, "hybridcon_stream_keyframe_interval_seconds", **stage) == pytest.approx(
        1.0, abs=0.05
    )
    # The HLS packager's first video consumer asked for a keyframe.
    assert value(s, "hybridcon_stream_keyframe_requests_total", **stage) >= 1
    assert value(s, "hybridcon_stream_ingest_packets_lost_total", kind="video", **stage) == 0
    assert value(s, "hybridcon_stream_publisher", stage="plenary") == 0

    # One WHEP viewer gets in (the cap is 1); the next is refused and counted.
    vpc, _watch = viewer_peer(decode=False)
    resp = await client.post(
        "/whep/impact", data=await make_offer(vpc), headers={**SDP, **bearer(issue(client))}
    )
    assert resp.status == 201
    await take_answer(vpc, await resp.text())
    extra, _ = viewer_peer(decode=False)
    resp = await client.post(
        "/whep/impact", data=await make_offer(extra), headers={**SDP, **bearer(issue(client))}
    )
    assert resp.status == 503

    async def viewer_counted() -> bool:
        s = await scrape(client)
        return value(s, "hybridcon_stream_whep_viewers", **stage) == 1

    await eventually(viewer_counted, timeout=5, what="the viewer gauge")
    s = await scrape(client)
    assert value(s, "hybridcon_stream_whep_sessions_total", **stage) == 1
    assert (
        value(s, "hybridcon_stream_offers_refused_total", endpoint="whep", reason="full", **stage)
        == 1
    )

    # The publisher vanishes without a DELETE: interrupted, counted; rates fall to 0.
    await pc.close()
    await eventually(
        lambda: stream.state is StreamState.INTERRUPTED, timeout=20, what="interrupted"
    )

    async def interrupted() -> bool:
        s = await scrape(client)
        return (
            value(s, "hybridcon_stream_state", state="interrupted", **stage) == 1
            and value(s, "hybridcon_stream_interruptions_total", **stage) == 1
            and value(s, "hybridcon_stream_publisher", **stage) == 0
            and value(s, "hybridcon_stream_ingest_bitrate_bps", kind="video", **stage) == 0
        )

    await eventually(interrupted, timeout=5, what="the interruption in /metrics")
    for peer in (vpc, extra):
        await peer.close()
    if player.video is not None:
        player.video.stop()


async def test_an_organiser_take_over_interrupts_and_the_new_media_makes_it_live(server):
    client, media = server
    watcher = await WsClient.connect(client, issue(client))
    await watcher.ok("subscribe", topic="stage:impact")
    first, first_player = publisher_peer(media)
    await take_answer(first, await publish(client, first))
    assert (await next_state(watcher, timeout=10))["state"] == "live"

    second, second_player = publisher_peer(media)
    resp = await client.post(
        "/whip/impact?takeover=1",
        data=await make_offer(second),
        headers={**SDP, **bearer(issue(client, Role.ORGANISER))},
    )
    assert resp.status == 201, await resp.text()
    # The old publisher is gone; the new one has not sent anything yet.
    assert (await next_state(watcher, timeout=10))["state"] == "interrupted"
    stream = client.server.app[STREAMS].get("impact")
    assert stream.state is StreamState.INTERRUPTED and stream.media_at is None
    await take_answer(second, await resp.text())
    assert (await next_state(watcher, timeout=10))["state"] == "live"

    s = await scrape(client)
    assert value(s, "hybridcon_stream_publisher_sessions_total", stage="impact") == 2
    assert value(s, "hybridcon_stream_interruptions_total", stage="impact") == 1
    assert value(s, "hybridcon_stream_state", stage="impact", state="live") == 1
    for pc, player in ((first, first_player), (second, second_player)):
        await pc.close()
        if player.video is not None:
            player.video.stop()
    await watcher.close()
