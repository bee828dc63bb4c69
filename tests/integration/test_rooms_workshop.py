"""An online workshop from lobby to end, through hybridcon, on both room providers.

The node as it runs: the real app on port 0 (real PostgreSQL), the sessions capability as
the gate and as the driver of the provider, a host over the WebSocket, and participants'
aiortc peers negotiating through the session media routes (``POST …/publish``,
``POST …/feeds/{participant}`` + ``PATCH``). The same scenario runs on ``builtin`` (media
in this process; peers on loopback) and on ``janus`` (a real Janus from Debian's package
in a network namespace of the module's own, ``tests/janus.py``; peers gather on the veth
pair's host end, which the ICE guard allows).

Lobby, admission, the floor, a refused publish without it, two publishers seen by a
third (frames decoded from each), a host's mute (the audio stops arriving, the video goes
on), a removal (the person's connections end, the gate refuses them after), breakouts (a
group's room made in the provider, two people publishing and seeing each other there,
then back in the main room), and the end (every room destroyed in the provider).

The networking scenario runs on the same two providers through the same routes under
``/api/v1/network/{room}``: two at a table see each other, a third not seated is refused
(403, no peer connection), leaving ends the leaver's media and the other's subscription
to it, the emptied table's room is closed; a roulette pair sees each other, and a report
ends the pairing's room; reported at the table, a person's camera ends there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)

from hybridcon.api.rooms import ROOM_MEDIA, RoomMedia
from hybridcon.app import create_app
from hybridcon.core.tokens import Role
from hybridcon.media.peers import gathering_on
from hybridcon.rooms.builtin import BuiltinRooms
from hybridcon.rooms.janus import JanusRooms
from ice_guard import IceGuard
from janus import JanusProcess, app_settings, participants, room_exists, running_janus, skip_reason
from media_fixtures import (
    ICE_ADDRESSES,
    GeneratedMedia,
    Watch,
    _read,
    h264_capabilities,
    make_media,
    publisher_peer,
)
from support import WsClient, bearer, eventually, issue

pytestmark = pytest.mark.slow

SESSION = "online-1"
BASE = f"/api/v1/sessions/{SESSION}"
SDP = {"Content-Type": "application/sdp"}
GROUP = f"{SESSION}~1"


@pytest.fixture(scope="module")
def shared_janus() -> Iterator[JanusProcess]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(f"no Janus for this test: {reason}")
    with running_janus() as server:
        yield server


@dataclass
class Backend:
    """What the scenario needs to know of the provider under test."""

    name: str
    addresses: Sequence[str]  # where the participants' peers gather candidates
    # Whether the provider still has the room (Janus: asked directly).
    has_room: Callable[[str], Awaitable[bool]]
    # Publishers the media server holds in a room (Janus: its participants but hybridcon's).
    publishers_in: Callable[[str], Awaitable[int]]


@pytest.fixture(params=["builtin", "janus"])
async def workshop(
    request: pytest.FixtureRequest, make_settings: Any, tmp_path: Path, ice_guard: IceGuard
) -> AsyncIterator[tuple[TestClient[Any, Any], RoomMedia, Backend]]:
    """The app on the provider of the parameter, and how to look into that provider."""
    server: JanusProcess | None = None
    if request.param == "janus":
        server = request.getfixturevalue("shared_janus")
        ice_guard.allow(server.ns.network)
        settings = make_settings(**app_settings(server, tmp_path / "janus-keys"))
    else:
        settings = make_settings()
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        media = app[ROOM_MEDIA]
        provider = media.provider
        if server is not None:
            janus = server
            assert isinstance(provider, JanusRooms) and provider.ready, janus.tail()

            async def janus_has_room(room: str) -> bool:
                return await room_exists(janus, room)

            async def janus_publishers(room: str) -> int:
                if not await room_exists(janus, room):
                    return 0
                return len([p for p in await participants(janus, room) if p != "hybridcon"])

            backend = Backend("janus", [janus.ns.host_address], janus_has_room, janus_publishers)
        else:
            assert isinstance(provider, BuiltinRooms)
            builtin = provider

            async def builtin_has_room(room: str) -> bool:
                return room in builtin._rooms  # builtin has no public listing of its rooms

            async def builtin_publishers(room: str) -> int:
                return len(builtin.feeds(room))

            backend = Backend("builtin", ICE_ADDRESSES, builtin_has_room, builtin_publishers)
        yield client, media, backend


@dataclass
class Person:
    """A participant: a token, a WebSocket, and the peer connections they made."""

    sub: str
    token: str
    ws: WsClient
    pcs: list[RTCPeerConnection] = field(default_factory=list)
    watches: dict[str, Watch] = field(default_factory=dict)
    players: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()
        for player in self.players:
            if player.video is not None:
                player.video.stop()
        for watch in self.watches.values():
            for task in watch.tasks:
                task.cancel()
            await asyncio.gather(*watch.tasks, return_exceptions=True)
        await self.ws.close()


class Room:
    """The participants' side of the media routes."""

    def __init__(self, client: TestClient[Any, Any], backend: Backend, media_file: GeneratedMedia):
        self.client = client
        self.backend = backend
        self.media_file = media_file

    async def publish(self, who: Person, base: str = BASE) -> tuple[int, RTCPeerConnection, str]:
        """``who`` offers camera and microphone (H.264 constrained baseline, which both
        providers take) under ``base`` (a session's routes, or a networking room's); the
        status, the peer and the answer (or the error's message)."""
        pc, player = publisher_peer(self.media_file, video_codecs=h264_capabilities("42"))
        with gathering_on(self.backend.addresses):
            await pc.setLocalDescription(await pc.createOffer())
        resp = await self.client.post(
            f"{base}/publish", data=pc.localDescription.sdp, headers={**SDP, **bearer(who.token)}
        )
        if resp.status != 201:
            await pc.close()
            if player.video is not None:
                player.video.stop()
            return resp.status, pc, (await resp.json())["error"]["message"]
        who.pcs.append(pc)
        who.players.append(player)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=await resp.text(), type="answer"))
        return resp.status, pc, ""

    async def watch(
        self, who: Person, feed: Person, base: str = BASE
    ) -> tuple[RTCPeerConnection, Watch]:
        """``who`` subscribes to ``feed``: the provider's offer, answered with PATCH."""
        resp = await self.client.post(f"{base}/feeds/{feed.sub}", headers=bearer(who.token))
        assert resp.status == 201, await resp.text()
        assert resp.content_type == "application/sdp"
        location = resp.headers["Location"]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        watch = Watch(target=15)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            watch.tasks.append(asyncio.ensure_future(_read(track, watch)))

        who.pcs.append(pc)
        who.watches[f"{feed.sub}@{len(who.pcs)}"] = watch
        await pc.setRemoteDescription(RTCSessionDescription(sdp=await resp.text(), type="offer"))
        with gathering_on(self.backend.addresses):
            await pc.setLocalDescription(await pc.createAnswer())
        patched = await self.client.patch(
            location, data=pc.localDescription.sdp, headers={**SDP, **bearer(who.token)}
        )
        assert patched.status == 204, await patched.text()
        return pc, watch

    async def feeds(self, who: Person, base: str = BASE) -> dict[str, Any]:
        resp = await self.client.get(f"{base}/feeds", headers=bearer(who.token))
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


def _ended(*pcs: RTCPeerConnection) -> Callable[[], bool]:
    return lambda: all(pc.connectionState in ("closed", "failed") for pc in pcs)


async def test_a_workshop_from_lobby_to_end(workshop, tmp_path: Path) -> None:
    client, media, backend = workshop
    provider = media.provider
    # 20 s of media: longer than a janus run takes from the first publish to the end.
    room = Room(client, backend, make_media(tmp_path, seconds=20))
    people: dict[str, Person] = {}
    try:
        for sub, role in (
            ("u:host", Role.MODERATOR),
            ("u:ann", Role.VIEWER),
            ("u:bob", Role.VIEWER),
            ("u:cas", Role.VIEWER),
            ("u:dan", Role.VIEWER),
        ):
            token = issue(client, role, (f"session:{SESSION}",), sub=sub)
            people[sub] = Person(sub, token, await WsClient.connect(client, token))
        host, ann, bob, cas, dan = people.values()

        # The lobby: participants wait until the host opens; opening lets them in.
        for person in (ann, bob, cas, dan):
            assert (await person.ws.ok("session.join", session=SESSION))["state"] == "lobby"
        assert (await host.ws.ok("session.join", session=SESSION))["state"] == "admitted"
        opened = await host.ws.ok("session.open", session=SESSION)
        assert sorted(opened["admitted"]) == ["u:ann", "u:bob", "u:cas", "u:dan"]
        for person in (ann, bob, cas, dan):
            assert (await person.ws.push("session.admitted"))["room"] == SESSION
        assert await backend.has_room(SESSION), "opening makes the session's room"

        # Admitted, but without the floor: refused by the server, no peer connection.
        status, _pc, message = await room.publish(dan)
        assert status == 403 and "does not have the floor" in message
        assert media.owners == {} and provider.feeds(SESSION) == []
        assert await backend.publishers_in(SESSION) == 0

        # The host gives the floor to two; they publish.
        for person in (ann, bob):
            await host.ws.ok("session.floor", session=SESSION, user_id=person.sub, grant=True)
            assert (await person.ws.push("session.floor"))["granted"] is True
        status, ann_camera, message = await room.publish(ann)
        assert status == 201, message
        status, bob_camera, message = await room.publish(bob)
        assert status == 201, message

        async def listed() -> bool:
            return {f["participant"] for f in (await room.feeds(cas))["feeds"]} == {
                "u:ann",
                "u:bob",
            }

        await eventually(listed, timeout=10, what="both feeds listed for the room")
        assert await backend.publishers_in(SESSION) == 2

        # A third watches both and decodes video and audio from each; Bob watches Ann.
        _pc, from_ann = await room.watch(cas, ann)
        _pc, from_bob = await room.watch(cas, bob)
        bob_watching, bob_sees_ann = await room.watch(bob, ann)
        await eventually(
            lambda: (
                min(from_ann.frames, from_bob.frames, bob_sees_ann.frames) >= 15
                and min(from_ann.audio_frames, from_bob.audio_frames) >= 10
            ),
            timeout=15,
            what="decoded video and audio from both feeds",
        )
        assert from_ann.sizes == from_bob.sizes == {(room.media_file.width, room.media_file.height)}

        # The host mutes Ann's microphone: her audio stops arriving, her video goes on,
        # Bob's audio goes on; unmuted, it comes back.
        await host.ws.ok("session.mute", session=SESSION, user_id="u:ann", kind="audio")
        assert (await ann.ws.push("session.muted"))["muted"] is True
        await eventually(
            lambda: (
                [f.audio_muted for f in provider.feeds(SESSION) if f.participant == "u:ann"]
                == [True]
            ),
            what="Ann's audio muted in the provider",
        )
        video = from_ann.frames
        # What was already on its way (jitter buffers) arrives within these 15 frames.
        await eventually(lambda: from_ann.frames >= video + 15, timeout=5, what="more video")
        audio, video, bob_audio = from_ann.audio_frames, from_ann.frames, from_bob.audio_frames
        await eventually(lambda: from_ann.frames >= video + 30, timeout=5, what="more video")
        assert from_ann.audio_frames - audio <= 2, "muted audio still arrived"
        assert from_bob.audio_frames > bob_audio + 10
        await host.ws.ok("session.mute", session=SESSION, user_id="u:ann", muted=False)
        await eventually(
            lambda: from_ann.audio_frames > audio + 10, timeout=5, what="audio after unmute"
        )

        # The host removes Bob: his camera and his watching end, the gate refuses him.
        await host.ws.ok("session.remove", session=SESSION, user_id="u:bob")
        assert (await bob.ws.push("session.left"))["reason"] == "removed"
        await eventually(
            _ended(bob_camera, bob_watching), timeout=10, what="both of Bob's connections ended"
        )
        await eventually(
            lambda: [f.participant for f in provider.feeds(SESSION)] == ["u:ann"],
            timeout=10,
            what="Bob's feed gone",
        )
        status, _pc, message = await room.publish(bob)
        assert status == 403 and "removed" in message, message
        for path in ("/ice", "/feeds", "/feeds/u:ann"):
            method = client.post if path == "/feeds/u:ann" else client.get
            assert (await method(f"{BASE}{path}", headers=bearer(bob.token))).status == 403
        frames = from_ann.frames
        await eventually(lambda: from_ann.frames > frames + 10, what="Cas still sees Ann")

        # Breakouts: Ann and Cas in a group. The group's room is made in the provider;
        # Ann's main-room camera ends; both publish there and see each other.
        split = await host.ws.ok("session.breakouts", session=SESSION, groups=[["u:ann", "u:cas"]])
        assert split["rooms"] == [GROUP]
        assert await backend.has_room(GROUP)
        await eventually(_ended(ann_camera), timeout=10, what="Ann's main-room camera ended")
        assert (await room.feeds(ann))["room"] == GROUP
        assert (await room.feeds(dan))["room"] == SESSION
        status, ann_in_group, message = await room.publish(ann)
        assert status == 201, message
        status, cas_in_group, message = await room.publish(cas)  # no floor needed in a group
        assert status == 201, message

        async def both_in_group() -> bool:
            return {f["participant"] for f in (await room.feeds(ann))["feeds"]} == {
                "u:ann",
                "u:cas",
            }

        await eventually(both_in_group, timeout=10, what="both feeds in the group's room")
        assert provider.feeds(SESSION) == []
        assert await backend.publishers_in(GROUP) == 2
        ann_sees, of_cas = await room.watch(ann, cas)
        cas_sees, of_ann = await room.watch(cas, ann)
        await eventually(
            lambda: min(of_cas.frames, of_ann.frames) >= 15, timeout=15, what="frames in the group"
        )
        # Dan, in the main room, cannot watch into the group.
        resp = await client.post(f"{BASE}/feeds/u:ann", headers=bearer(dan.token))
        assert resp.status == 404 and "not publishing" in (await resp.json())["error"]["message"]

        # Back: the group's room ends with every connection in it.
        assert (await host.ws.ok("session.breakouts.end", session=SESSION))["groups"] == 1
        await eventually(
            _ended(ann_in_group, cas_in_group, ann_sees, cas_sees),
            timeout=10,
            what="the group's connections ended",
        )
        assert not await backend.has_room(GROUP)
        assert (await room.feeds(ann))["room"] == SESSION
        # Ann still has the floor in the main room; Cas (no floor there) has not.
        status, _pc, message = await room.publish(cas)
        assert status == 403 and "does not have the floor" in message
        status, ann_back, message = await room.publish(ann)
        assert status == 201, message
        await eventually(
            lambda: [f.participant for f in provider.feeds(SESSION)] == ["u:ann"],
            timeout=10,
            what="Ann back in the main room",
        )
        dan_watching, dan_sees_ann = await room.watch(dan, ann)
        await eventually(lambda: dan_sees_ann.frames >= 10, timeout=15, what="Dan sees Ann")

        # The end: the room is destroyed in the provider, every connection ends, and the
        # routes refuse everyone.
        ended = await host.ws.ok("session.end", session=SESSION)
        assert ended["state"] == "ended"
        await eventually(_ended(ann_back, dan_watching), timeout=10, what="every connection ended")
        assert not await backend.has_room(SESSION)
        assert provider.feeds(SESSION) == []
        resp = await client.get(f"{BASE}/ice", headers=bearer(ann.token))
        assert resp.status == 403
        assert media.owners == {}
    finally:
        for person in people.values():
            await person.close()


async def test_a_networking_table_and_a_roulette_pair(workshop, tmp_path: Path) -> None:
    client, media, backend = workshop
    provider = media.provider
    room = Room(client, backend, make_media(tmp_path, seconds=20))
    table_room = "net~t1"
    table = f"/api/v1/network/{table_room}"
    people: dict[str, Person] = {}
    try:
        for sub in ("u:ann", "u:bob", "u:cas"):
            token = issue(client, Role.VIEWER, sub=sub, name=sub[2:].title())
            people[sub] = Person(sub, token, await WsClient.connect(client, token))
        ann, bob, cas = people.values()

        # Ann and Bob sit at t1; Cas is not seated.
        seated = await ann.ws.ok("network.join")
        assert (seated["table"], seated["room"]) == ("t1", table_room)
        await bob.ws.ok("network.join", table="t1")
        status, ann_camera, message = await room.publish(ann, table)
        assert status == 201, message
        status, bob_camera, message = await room.publish(bob, table)
        assert status == 201, message
        assert await backend.has_room(table_room)

        # Cas is not seated there: the server refuses her before any negotiation.
        status, _pc, message = await room.publish(cas, table)
        assert status == 403 and "not seated at table t1" in message, message
        for path in ("/ice", "/feeds", "/feeds/u:ann"):
            method = client.post if path == "/feeds/u:ann" else client.get
            resp = await method(f"{table}{path}", headers=bearer(cas.token))
            assert resp.status == 403, await resp.text()
        assert {o.participant for o in media.owners.values()} == {"u:ann", "u:bob"}
        # The gate follows the seat: seated, she may; stood up again, she may not.
        assert (await cas.ws.ok("network.join", table="t1"))["table"] == "t1"
        resp = await client.get(f"{table}/feeds", headers=bearer(cas.token))
        assert resp.status == 200, await resp.text()
        await cas.ws.ok("network.leave")
        status, _pc, message = await room.publish(cas, table)
        assert status == 403, message
        resp = await client.get("/api/v1/network/net~t9/feeds", headers=bearer(ann.token))
        assert resp.status == 404 and "no table t9" in (await resp.json())["error"]["message"]

        async def both_listed() -> bool:
            feeds = (await room.feeds(ann, table))["feeds"]
            return {f["participant"] for f in feeds} == {"u:ann", "u:bob"}

        await eventually(both_listed, timeout=10, what="both feeds listed at the table")
        assert await backend.publishers_in(table_room) == 2

        # They see each other: frames decoded both ways.
        ann_watching, ann_sees_bob = await room.watch(ann, bob, table)
        bob_watching, bob_sees_ann = await room.watch(bob, ann, table)
        await eventually(
            lambda: (
                min(ann_sees_bob.frames, bob_sees_ann.frames) >= 15
                and min(ann_sees_bob.audio_frames, bob_sees_ann.audio_frames) >= 10
            ),
            timeout=15,
            what="Ann and Bob decode each other's video and audio",
        )

        # Cas sits down and shares; Ann reports her: Cas is stood up, her camera ends,
        # and the gate refuses her.
        await cas.ws.ok("network.join", table="t1")
        status, cas_camera, message = await room.publish(cas, table)
        assert status == 201, message
        # Connected first: a peer closed before its DTLS is up only fails after ICE's
        # own timeout (about 30 s in aiortc).
        await eventually(
            lambda: cas_camera.connectionState == "connected", what="Cas's camera connected"
        )
        await ann.ws.ok("network.report", user_id="u:cas", reason="test")
        removed = await cas.ws.push("network.removed")
        assert removed == {**removed, "table": "t1", "room": table_room, "reason": "reported"}
        await eventually(_ended(cas_camera), timeout=10, what="Cas's camera ended")
        status, _pc, message = await room.publish(cas, table)
        assert status == 403 and "not seated" in message, message
        assert ann_sees_bob.frames > 0 and bob_camera.connectionState == "connected"

        # Bob leaves the table: his camera and his watching end, and so does Ann's
        # subscription to him; Ann's camera goes on; the gate refuses Bob now.
        await bob.ws.ok("network.leave")
        while [p["id"] for p in (await ann.ws.push("network.table"))["people"]] != ["u:ann"]:
            pass
        await eventually(
            _ended(bob_camera, bob_watching, ann_watching),
            timeout=10,
            what="Bob's connections and Ann's watching of him ended",
        )
        await eventually(
            lambda: [f.participant for f in provider.feeds(table_room)] == ["u:ann"],
            timeout=10,
            what="Bob's feed gone from the table",
        )
        assert ann_camera.connectionState == "connected"
        status, _pc, message = await room.publish(bob, table)
        assert status == 403 and "not seated" in message, message

        # Ann leaves too: the table empties, its room closes with her connections.
        await ann.ws.ok("network.leave")
        await eventually(_ended(ann_camera), timeout=10, what="Ann's camera ended")
        assert not await backend.has_room(table_room)
        assert media.owners == {}

        # The roulette pairs Ann and Bob; they see each other in the pairing's room.
        assert (await ann.ws.ok("network.roulette"))["state"] == "waiting"
        paired = await bob.ws.ok("network.roulette")
        assert paired["state"] == "paired" and paired["partner"]["id"] == "u:ann"
        pair_room = paired["room"]
        assert (await ann.ws.push("network.paired"))["room"] == pair_room
        pair = f"/api/v1/network/{pair_room}"
        status, ann_camera, message = await room.publish(ann, pair)
        assert status == 201, message
        status, bob_camera, message = await room.publish(bob, pair)
        assert status == 201, message
        status, _pc, message = await room.publish(cas, pair)  # not in this pairing
        assert status == 403 and f"not in pairing {pair_room}" in message, message

        async def pair_listed() -> bool:
            feeds = (await room.feeds(bob, pair))["feeds"]
            return {f["participant"] for f in feeds} == {"u:ann", "u:bob"}

        await eventually(pair_listed, timeout=10, what="both feeds listed in the pairing")
        ann_watching, ann_sees_bob = await room.watch(ann, bob, pair)
        bob_watching, bob_sees_ann = await room.watch(bob, ann, pair)
        await eventually(
            lambda: min(ann_sees_bob.frames, bob_sees_ann.frames) >= 15,
            timeout=15,
            what="the pair decode each other's video",
        )

        # Ann reports Bob: the pairing ends, and with it its room and every connection.
        await ann.ws.ok("network.report", user_id="u:bob", reason="test")
        assert (await bob.ws.push("network.unpaired"))["reason"] == "reported"
        await eventually(
            _ended(ann_camera, bob_camera, ann_watching, bob_watching),
            timeout=10,
            what="the pairing's connections ended",
        )
        assert not await backend.has_room(pair_room)
        status, _pc, message = await room.publish(bob, pair)
        assert status == 404 and "no pairing" in message, message
        assert media.owners == {}
    finally:
        for person in people.values():
            await person.close()


async def test_janus_down_during_a_workshop(
    make_settings: Any, tmp_path: Path, test_namespace: Any
) -> None:
    """Janus killed while a workshop runs: the routes and the host's requests say the video
    server is not reachable, the session's state says media is down; when Janus is back the
    room is made again and people publish and watch again."""
    if (reason := skip_reason()) is not None:
        pytest.skip(f"no Janus for this test: {reason}")
    server = JanusProcess(test_namespace, tmp_path / "janus")
    server.start()
    app = create_app(make_settings(**app_settings(server, tmp_path / "janus-keys")))
    people: list[Person] = []
    try:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            backend = Backend(
                "janus",
                [test_namespace.host_address],
                lambda room: room_exists(server, room),
                _unused_count,
            )
            room = Room(client, backend, make_media(tmp_path, seconds=12))
            for sub, role in (("u:host", Role.MODERATOR), ("u:ann", Role.VIEWER)):
                token = issue(client, role, (f"session:{SESSION}",), sub=sub)
                people.append(Person(sub, token, await WsClient.connect(client, token)))
            host, ann = people
            await host.ws.ok("session.join", session=SESSION)
            await host.ws.ok("session.open", session=SESSION, auto_admit=True)
            await ann.ws.ok("session.join", session=SESSION)
            await ann.ws.ok("subscribe", topic=f"session:{SESSION}")
            await host.ws.ok("session.floor", session=SESSION, user_id="u:ann", grant=True)
            status, _camera, message = await room.publish(ann)
            assert status == 201, message

            server.kill()
            await eventually(lambda: not app[ROOM_MEDIA].provider.ready, what="Janus seen gone")
            # Her peer connection died with Janus (aiortc's own ICE takes ~30 s to notice;
            # a browser's, a few seconds): hybridcon lists no feed.
            assert (await room.feeds(host))["feeds"] == []
            status, _pc, message = await room.publish(ann)
            assert status == 503 and message == "the video server (Janus) is not reachable"
            reply = await host.ws.request(
                "session.mute", session=SESSION, user_id="u:ann", kind="audio"
            )
            assert reply["type"] == "error" and reply["code"] == "unavailable", reply
            assert "the media server did not take it" in reply["message"]
            assert "Janus" in reply["message"]
            state = await _state_with(ann.ws, media="down")
            assert state["media"] == "down"

            server.start()
            await eventually(lambda: app[ROOM_MEDIA].provider.ready, timeout=15, what="Janus back")
            assert await room_exists(server, SESSION), "the room was made again"
            assert (await _state_with(ann.ws, media="up"))["media"] == "up"
            status, _pc, message = await room.publish(ann)
            assert status == 201, message

            async def listed() -> bool:
                return len((await room.feeds(host))["feeds"]) == 1

            await eventually(listed, timeout=10, what="Ann's feed listed again")
            _pc, watch = await room.watch(host, ann)
            await eventually(lambda: watch.frames >= 10, timeout=15, what="Ann seen again")
    finally:
        for person in people:
            await person.close()
        server.stop()


async def _unused_count(_room: str) -> int:
    raise AssertionError("not used in this test")


async def _state_with(ws: WsClient, **expected: Any) -> dict[str, Any]:
    """The next ``session.state`` push with ``expected``'s values."""
    while True:
        state = await ws.push("session.state", timeout=10)
        if all(state.get(k) == v for k, v in expected.items()):
            return state
