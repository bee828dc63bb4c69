"""A zoom-style session's media on the builtin provider, over the real HTTP routes, with
real aiortc peers on loopback: publishing, watching, mute, unpublish, remove, the floor,
caps and bad input.

The session rules (lobby, floor, removal) are not in this test: :class:`StandInGate`
stands in for them, a small real gate that admits and gives the floor by user id, as
the sessions capability does (its rules are tested on their own in core). What is
tested here is that the routes ask the gate before any negotiation and that the
provider carries out publish, subscribe, mute, unpublish and remove for real.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from hybridcon.api.rooms import ROOM_MEDIA
from hybridcon.app import create_app
from hybridcon.core.rooms import MediaAccess, RoomEvent, RoomEventKind, RoomSpec
from hybridcon.core.tokens import Claims, Role
from hybridcon.core.turn import credentials_valid
from hybridcon.errors import Forbidden, NotFound
from hybridcon.media.peers import gathering_on
from hybridcon.rooms.builtin import BuiltinRooms
from media_fixtures import ICE_ADDRESSES, make_media, make_offer, publisher_peer, take_answer
from support import WsClient, bearer, eventually, issue

SESSION = "online-1"
BASE = f"/api/v1/sessions/{SESSION}"
SDP = {"Content-Type": "application/sdp"}


class StandInGate:
    """Stands in for the session rules: admits ``admitted``, gives the floor to ``floor``,
    refuses whoever was removed."""

    def __init__(self, admitted: set[str], floor: set[str]) -> None:
        self.admitted = admitted
        self.floor = floor
        self.asked: list[str] = []

    def media_access(self, session: str, claims: Claims) -> MediaAccess:
        self.asked.append(claims.sub)
        if claims.sub not in self.admitted:
            raise Forbidden(f"{claims.sub} is not admitted to session {session}")
        return MediaAccess(
            room=session, participant=claims.sub, may_publish=claims.sub in self.floor, host=False
        )


@dataclass
class Received:
    """What a subscriber decoded from one feed."""

    video: int = 0
    audio: int = 0
    ended: set[str] = field(default_factory=set)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def _read(track: MediaStreamTrack, got: Received) -> None:
    try:
        while True:
            await track.recv()  # decoded: an av.VideoFrame or av.AudioFrame
            if track.kind == "video":
                got.video += 1
            else:
                got.audio += 1
    except MediaStreamError:
        got.ended.add(track.kind)


@pytest.fixture
async def room(make_settings, tmp_path):
    settings = make_settings(room_max_publishers=2)
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        gate = StandInGate({"anna", "bert", "carla", "dave"}, floor={"anna", "bert", "carla"})
        media = app[ROOM_MEDIA]
        media.gate = gate
        events: list[RoomEvent] = []
        media.provider.listen(events.append)
        tokens = {
            who: issue(client, Role.VIEWER, scopes=(f"session:{SESSION}",), sub=who)
            for who in ("anna", "bert", "carla", "dave")
        }
        # 12 s: longer than the test takes, and longer than the 10 s after which
        # make_media once wrote a wrapped first Opus timestamp (viewers got no audio).
        yield client, media, gate, events, tokens, settings, make_media(tmp_path, seconds=12)


async def _publish(client, media_file, token):
    pc, player = publisher_peer(media_file)
    resp = await client.post(
        f"{BASE}/publish", data=await make_offer(pc), headers={**SDP, **bearer(token)}
    )
    return pc, player, resp


async def _subscribe(client, token, feed) -> tuple[RTCPeerConnection, Received, str]:
    resp = await client.post(f"{BASE}/feeds/{feed}", headers=bearer(token))
    assert resp.status == 201, await resp.text()
    assert resp.content_type == "application/sdp"
    location = resp.headers["Location"]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    got = Received()
    pc.on("track", lambda track: got.tasks.append(asyncio.ensure_future(_read(track, got))))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=await resp.text(), type="offer"))
    with gathering_on(ICE_ADDRESSES):
        await pc.setLocalDescription(await pc.createAnswer())
    patched = await client.patch(
        location, data=pc.localDescription.sdp, headers={**SDP, **bearer(token)}
    )
    assert patched.status == 204, await patched.text()
    return pc, got, location


def _kinds(events: list[RoomEvent], kind: RoomEventKind) -> list[str]:
    return [e.participant for e in events if e.kind is kind]


async def test_publish_watch_mute_unpublish_remove(room) -> None:
    client, media, gate, events, tokens, _settings, media_file = room
    provider = media.provider
    assert isinstance(provider, BuiltinRooms)
    peers: list[RTCPeerConnection] = []
    players: list[Any] = []
    try:
        # Two participants with the floor publish.
        for who in ("anna", "bert"):
            pc, player, resp = await _publish(client, media_file, tokens[who])
            peers.append(pc)
            players.append(player)
            assert resp.status == 201, await resp.text()
            assert resp.headers["Location"].startswith(f"{BASE}/publish/")
            await take_answer(pc, await resp.text())
        anna_pc = peers[0]
        await eventually(
            lambda: sorted(_kinds(events, RoomEventKind.PUBLISHING)) == ["anna", "bert"],
            timeout=10,
            what="both publishers' media reaching their hubs",
        )

        # A third one with the floor is over the room's cap: a clear error, no connection.
        before = provider.peers
        extra_pc, _player, resp = await _publish(client, media_file, tokens["carla"])
        await extra_pc.close()
        assert resp.status == 409
        assert "the most it takes" in (await resp.json())["error"]["message"]
        assert provider.peers == before

        # Who publishes is listed for the room.
        listed = await (await client.get(f"{BASE}/feeds", headers=bearer(tokens["dave"]))).json()
        assert {f["participant"] for f in listed["feeds"]} == {"anna", "bert"}
        assert all(f["audio"] and f["video"] for f in listed["feeds"])

        # Carla watches both and decodes video and audio from each; Anna watches Bert.
        anna_sub, from_anna, _ = await _subscribe(client, tokens["carla"], "anna")
        bert_sub, from_bert, _ = await _subscribe(client, tokens["carla"], "bert")
        annas_watch, anna_sees_bert, _ = await _subscribe(client, tokens["anna"], "bert")
        peers += [anna_sub, bert_sub, annas_watch]
        await eventually(
            lambda: (
                min(from_anna.video, from_bert.video, anna_sees_bert.video) >= 15
                and min(from_anna.audio, from_bert.audio) >= 10
            ),
            timeout=10,
            what="decoded video and audio from both feeds",
        )

        # Mute Anna's audio for everyone: it stops arriving, her video goes on, Bert's
        # audio goes on.
        await provider.mute(SESSION, "anna", "audio", True)
        assert next(f for f in provider.feeds(SESSION) if f.participant == "anna").audio_muted
        video = from_anna.video
        # What was already on its way (jitter buffers) arrives within these 15 frames.
        await eventually(lambda: from_anna.video >= video + 15, timeout=5, what="more video")
        audio, video, bert_audio = from_anna.audio, from_anna.video, from_bert.audio
        await eventually(lambda: from_anna.video >= video + 20, timeout=5, what="more video")
        assert from_anna.audio == audio, "muted audio still arrived"
        assert from_bert.audio > bert_audio
        await provider.mute(SESSION, "anna", "audio", False)
        await eventually(lambda: from_anna.audio > audio, timeout=5, what="audio after unmute")

        # Remove Anna (as the session rules do): every connection of hers ends (her
        # publish and her watching Bert), her watchers' tracks end, and the gate refuses
        # her from then on.
        gate.admitted.discard("anna")
        await provider.remove(SESSION, "anna")
        await eventually(
            lambda: {anna_pc.connectionState, annas_watch.connectionState} <= {"closed", "failed"},
            timeout=10,
            what="both of Anna's connections ended",
        )
        await eventually(
            lambda: from_anna.ended == {"audio", "video"} == anna_sees_bert.ended,
            timeout=10,
            what="the tracks of Anna's feed and of her watching ended",
        )
        assert "anna" in _kinds(events, RoomEventKind.GONE)
        assert {f.participant for f in provider.feeds(SESSION)} == {"bert"}
        again_pc, _player, resp = await _publish(client, media_file, tokens["anna"])
        await again_pc.close()
        assert resp.status == 403
        assert from_bert.ended == set()  # Carla still watches Bert

        # Unpublish Bert (the floor taken): the tracks of his subscribers end.
        await provider.unpublish(SESSION, "bert")
        await eventually(
            lambda: from_bert.ended == {"audio", "video"}, timeout=10, what="Bert's tracks ended"
        )
        assert "bert" in _kinds(events, RoomEventKind.UNPUBLISHED)
        assert "bert" not in _kinds(events, RoomEventKind.GONE)  # still in the room
        assert provider.feeds(SESSION) == []
        resp = await client.post(f"{BASE}/feeds/bert", headers=bearer(tokens["carla"]))
        assert resp.status == 404
        assert "not publishing" in (await resp.json())["error"]["message"]

        assert provider.peers == 0
    finally:
        for pc in peers:
            await pc.close()
        for player in players:
            if player.video is not None:
                player.video.stop()


async def test_without_the_floor_the_server_refuses_and_makes_no_connection(room) -> None:
    client, media, gate, _events, tokens, _settings, media_file = room
    pc, _player, resp = await _publish(client, media_file, tokens["dave"])
    await pc.close()
    assert resp.status == 403
    error = (await resp.json())["error"]
    assert error["code"] == "forbidden"
    assert "does not have the floor" in error["message"]
    assert media.provider.feeds(SESSION) == []
    assert isinstance(media.provider, BuiltinRooms) and media.provider.peers == 0
    assert gate.asked == ["dave"]

    # Not admitted at all: refused by the rules too; a token for another session is
    # refused before them; no such session is named.
    outsider = issue(client, Role.VIEWER, scopes=(f"session:{SESSION}",), sub="eva")
    resp = await client.post(f"{BASE}/feeds/anna", headers=bearer(outsider))
    assert resp.status == 403 and "not admitted" in (await resp.json())["error"]["message"]
    other = issue(client, Role.VIEWER, scopes=("session:online-2",), sub="anna")
    resp = await client.post(f"{BASE}/publish", data="v=0\r\n", headers={**SDP, **bearer(other)})
    assert resp.status == 403 and "does not cover" in (await resp.json())["error"]["message"]
    resp = await client.get("/api/v1/sessions/plenary-opening/ice", headers=bearer(tokens["anna"]))
    assert resp.status == 404
    resp = await client.get(f"{BASE}/ice")
    assert resp.status == 401


@pytest.mark.parametrize("body", ["hello", "", "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"])
async def test_sdp_garbage_is_called_that(room, body) -> None:
    client, media, _gate, _events, tokens, _settings, _media_file = room
    resp = await client.post(
        f"{BASE}/publish", data=body, headers={**SDP, **bearer(tokens["anna"])}
    )
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "invalid" and "SDP" in error["message"], error
    assert media.provider.feeds(SESSION) == []


async def test_a_garbage_answer_and_someone_elses_resource(room) -> None:
    client, _media, _gate, _events, tokens, _settings, media_file = room
    pc, player, resp = await _publish(client, media_file, tokens["anna"])
    try:
        assert resp.status == 201
        await take_answer(pc, await resp.text())
        offered = await client.post(f"{BASE}/feeds/anna", headers=bearer(tokens["carla"]))
        assert offered.status == 201
        location = offered.headers["Location"]
        for body in ("hello", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"):
            resp = await client.patch(
                location, data=body, headers={**SDP, **bearer(tokens["carla"])}
            )
            assert resp.status == 400, body
            error = (await resp.json())["error"]
            assert error["code"] == "invalid" and "answer" in error["message"], error
        # Someone else's Location is not theirs to answer or end.
        resp = await client.delete(location, headers=bearer(tokens["bert"]))
        assert resp.status == 404
        resp = await client.delete(location, headers=bearer(tokens["carla"]))
        assert resp.status == 200
        # Anna subscribing to herself is refused.
        resp = await client.post(f"{BASE}/feeds/anna", headers=bearer(tokens["anna"]))
        assert resp.status == 400 and "own feed" in (await resp.json())["error"]["message"]
    finally:
        await pc.close()
        if player.video is not None:
            player.video.stop()


async def test_ice_servers_carry_turn_credentials_of_the_persons_own(make_settings) -> None:
    # No peer connection is made here: the TURN URL is never contacted.
    settings = make_settings(turn_urls=["turn:turn.example.org:3478?transport=udp"])
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        app[ROOM_MEDIA].gate = StandInGate({"anna", "bert"}, floor=set())
        tokens = {
            who: issue(client, Role.VIEWER, scopes=(f"session:{SESSION}",), sub=who)
            for who in ("anna", "bert", "eva")
        }
        resp = await client.get(f"{BASE}/ice", headers=bearer(tokens["anna"]))
        assert resp.status == 200
        body = await resp.json()
        turn = body["ice_servers"][-1]
        assert turn["urls"] == ["turn:turn.example.org:3478?transport=udp"]
        expiry, _, user = turn["username"].partition(":")
        assert int(expiry) == int(datetime.fromisoformat(body["expires_at"]).timestamp())
        assert user and user != "anna"  # a pseudonym: coturn's logs get no names
        # The secret coturn is given (the file, created at start) verifies them.
        secret = settings.turn_secret_path.read_bytes().strip()
        assert credentials_valid(secret, turn["username"], turn["credential"], datetime.now(UTC))
        other = await (await client.get(f"{BASE}/ice", headers=bearer(tokens["bert"]))).json()
        assert other["ice_servers"][-1]["username"] != turn["username"]
        # Someone the session rules do not admit gets no credentials.
        resp = await client.get(f"{BASE}/ice", headers=bearer(tokens["eva"]))
        assert resp.status == 403


async def test_the_node_cap_and_a_publisher_leaving_by_itself(make_settings, tmp_path) -> None:
    settings = make_settings(room_max_peers=2)
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        media = app[ROOM_MEDIA]
        media.gate = StandInGate({"anna", "bert", "carla"}, floor={"anna"})
        events: list[RoomEvent] = []
        media.provider.listen(events.append)
        token = {
            who: issue(client, Role.VIEWER, scopes=(f"session:{SESSION}",), sub=who)
            for who in ("anna", "bert", "carla")
        }
        pc, player, resp = await _publish(client, make_media(tmp_path, seconds=12), token["anna"])
        try:
            assert resp.status == 201
            await take_answer(pc, await resp.text())
            watch, seen, _ = await _subscribe(client, token["bert"], "anna")
            # Two connections on the node: the third is refused, to come back later.
            resp = await client.post(f"{BASE}/feeds/anna", headers=bearer(token["carla"]))
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "30"
            assert "the most it takes" in (await resp.json())["error"]["message"]
            await eventually(lambda: seen.video >= 5, timeout=10, what="Bert sees Anna")

            # Anna closes her page: her publish ends by itself, and so does Bert's view.
            await pc.close()
            await eventually(
                lambda: seen.ended == {"audio", "video"}, timeout=15, what="Bert's tracks ended"
            )
            assert _kinds(events, RoomEventKind.UNPUBLISHED) == ["anna"]
            assert "anna" in _kinds(events, RoomEventKind.GONE)
            await watch.close()
        finally:
            await pc.close()
            if player.video is not None:
                player.video.stop()


async def test_an_early_mute_holds_and_an_unanswered_offer_is_withdrawn(tmp_path) -> None:
    provider = BuiltinRooms(max_peers=4, ice_addresses=ICE_ADDRESSES, answer_timeout=0.3)
    await provider.start()
    try:
        await provider.ensure_room(
            RoomSpec("r", "Werkwinkel", max_publishers=2, max_participants=4)
        )
        # A host may mute someone before they publish: it holds for their publish.
        await provider.mute("r", "anna", "audio", True)
        pc, player = publisher_peer(make_media(tmp_path, seconds=12))
        answer = await provider.publish("r", "anna", await make_offer(pc))
        await take_answer(pc, answer.sdp)
        (feed,) = provider.feeds("r")
        assert feed.participant == "anna" and feed.audio_muted and not feed.video_muted
        offer = await provider.subscribe("r", "bert", "anna")
        assert provider.peers == 2
        await eventually(lambda: provider.peers == 1, timeout=5, what="the offer withdrawn")
        with pytest.raises(NotFound, match="went unanswered"):
            await provider.complete(offer.resource, "v=0\r\n")
        await pc.close()
        if player.video is not None:
            player.video.stop()
    finally:
        await provider.stop()
    assert provider.peers == 0


async def test_with_the_real_session_rules(make_settings, tmp_path) -> None:
    """The node as it runs: the sessions capability is the gate and drives the provider.
    A host opens the workshop over the WebSocket, gives the floor, mutes and removes; the
    media routes and the provider follow."""
    app = create_app(make_settings())
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        provider = app[ROOM_MEDIA].provider
        assert isinstance(provider, BuiltinRooms)
        people = {}
        for sub, role in (
            ("u:host", Role.MODERATOR),
            ("u:ann", Role.VIEWER),
            ("u:cas", Role.VIEWER),
        ):
            token = issue(client, role, (f"session:{SESSION}",), sub=sub)
            people[sub] = (token, await WsClient.connect(client, token))
        host = people["u:host"][1]
        await host.ok("session.join", session=SESSION)
        await host.ok("session.open", session=SESSION, auto_admit=True)
        for sub in ("u:ann", "u:cas"):
            assert (await people[sub][1].ok("session.join", session=SESSION))["state"] == "admitted"
        ann, cas = people["u:ann"][0], people["u:cas"][0]
        media_file = make_media(tmp_path, seconds=12)
        # Muting everyone's cameras while nobody publishes yet is fine, and undone.
        await host.ok("session.mute", session=SESSION, kind="video")
        await host.ok("session.mute", session=SESSION, kind="video", muted=False)

        # Admitted, but no floor: the server refuses.
        pc, player, resp = await _publish(client, media_file, ann)
        await pc.close()
        assert (
            resp.status == 403
            and "does not have the floor" in (await resp.json())["error"]["message"]
        )
        assert provider.peers == 0

        await host.ok("session.floor", session=SESSION, user_id="u:ann", grant=True)
        pc, player, resp = await _publish(client, media_file, ann)
        try:
            assert resp.status == 201, await resp.text()
            await take_answer(pc, await resp.text())
            watch, seen, _ = await _subscribe(client, cas, "u:ann")
            await eventually(lambda: seen.video >= 10 and seen.audio >= 5, timeout=10, what="media")

            # The host mutes Ann's microphone: the provider stops forwarding it.
            await host.ok("session.mute", session=SESSION, user_id="u:ann", kind="audio")
            await eventually(
                lambda: [f.audio_muted for f in provider.feeds(SESSION)] == [True],
                what="Ann's audio muted in the provider",
            )

            # The host removes Ann: her connection ends, Cas's view of her ends, and the
            # routes refuse her from then on.
            await host.ok("session.remove", session=SESSION, user_id="u:ann")
            await eventually(
                lambda: (
                    pc.connectionState in ("closed", "failed") and seen.ended == {"audio", "video"}
                ),
                timeout=10,
                what="Ann's media ended",
            )
            again = await client.get(f"{BASE}/ice", headers=bearer(ann))
            assert again.status == 403
            await watch.close()
        finally:
            await pc.close()
            if player.video is not None:
                player.video.stop()
            for _token, ws in people.values():
                await ws.close()
