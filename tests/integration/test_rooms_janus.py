"""The ``janus`` room provider against a real Janus (Debian's package) and real aiortc peers.

Where the media goes (see tests/janus.py): Janus runs in a network namespace of the test's
own and binds its API to the namespace's end of a veth pair; this process stays in the
host's namespace, drives Janus's API across the pair, and its aiortc peers gather their
candidates on the pair's host end (``gathering_on([ns.host_address])``). Janus skips
loopback and so does aioice, so this pair is the one path media can take; the ICE guard
allows the pair's /30 and fails the test on any other flow.

Most tests share one Janus (module scope; a SIGTERM'd Janus takes 1–2 s to exit, too long
to pay per test) and use rooms of their own; the outage test has its own Janus to kill.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer

from hybridcon.core.rooms import Feed, RoomEvent, RoomEventKind, RoomSpec
from hybridcon.errors import ConfigError, Forbidden, Invalid, NotFound, Unavailable
from hybridcon.media.peers import gathering_on
from hybridcon.rooms.janus import JanusRooms, room_number
from hybridcon.rooms.janus_api import (
    JanusConnection,
    JanusForbidden,
    JanusSession,
)
from hybridcon.settings import Settings
from ice_guard import IceGuard
from janus import (
    JanusProcess,
    janus_session,
    participants,
    room_exists,
    running_janus,
    skip_reason,
    unavailable,
)
from media_fixtures import GeneratedMedia, Watch, _read, h264_capabilities, make_media
from netns import Namespace
from support import eventually

pytestmark = pytest.mark.slow


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media() -> Iterator[GeneratedMedia]:
    """10 s of H.264 (constrained baseline) and Opus, made once for the module."""
    directory = Path(tempfile.mkdtemp(prefix="hybridcon-janus-media-"))
    yield make_media(directory, seconds=10.0)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_janus() -> Iterator[JanusProcess]:
    """One Janus in a namespace of the module's own; SIGTERM after."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(f"no Janus for these tests: {reason}")
    with running_janus() as server:
        yield server


@pytest.fixture
def janus(shared_janus: JanusProcess, ice_guard: IceGuard) -> JanusProcess:
    """The shared Janus, its namespace's pair allowed in this test's ICE guard."""
    ice_guard.allow(shared_janus.ns.network)
    return shared_janus


@pytest.fixture
def own_janus(test_namespace: Namespace, tmp_path: Path) -> Iterator[JanusProcess]:
    """A Janus of this test's own, to kill and start again."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"no Janus for this test: {reason}")
    server = JanusProcess(test_namespace, tmp_path / "janus")
    server.start()
    yield server
    server.stop()


def provider_for(server: JanusProcess) -> JanusRooms:
    return JanusRooms(
        server.url,
        room_key=server.room_key,
        admin_url=server.admin_url,
        admin_secret=server.admin_secret,
        timeout=5.0,
        backoff_max=0.5,
    )


@dataclass
class Heard:
    """The provider's reports, in order."""

    events: list[RoomEvent] = field(default_factory=list)

    def __call__(self, event: RoomEvent) -> None:
        self.events.append(event)

    def saw(self, kind: RoomEventKind, participant: str = "") -> bool:
        return any(e.kind == kind and e.participant == participant for e in self.events)


@pytest.fixture
async def rooms(janus: JanusProcess) -> AsyncIterator[tuple[JanusRooms, Heard]]:
    provider = provider_for(janus)
    heard = Heard()
    provider.listen(heard)
    await provider.start()
    assert provider.ready, janus.tail()
    yield provider, heard
    await provider.stop()


# --- aiortc peers on the pair's host end -----------------------------------------------------


@dataclass
class Peers:
    """The test's own aiortc peers; closed after the test."""

    ns: Namespace
    pcs: list[RTCPeerConnection] = field(default_factory=list)
    watches: list[Watch] = field(default_factory=list)

    async def publisher(self, media: GeneratedMedia) -> tuple[RTCPeerConnection, str]:
        """A camera and microphone sending ``media``'s packets; its complete offer."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        player = MediaPlayer(str(media.path), decode=False)
        assert player.video is not None and player.audio is not None
        pc.addTransceiver(player.video, direction="sendonly").setCodecPreferences(
            h264_capabilities("42")
        )
        pc.addTransceiver(player.audio, direction="sendonly")
        self.pcs.append(pc)
        with gathering_on([self.ns.host_address]):
            await pc.setLocalDescription(await pc.createOffer())
        return pc, pc.localDescription.sdp

    async def answer(self, offer: str) -> tuple[RTCPeerConnection, Watch, str]:
        """A participant's subscription: answers Janus's offer, decodes what arrives."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        watch = Watch(target=30)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            watch.tasks.append(asyncio.ensure_future(_read(track, watch)))

        self.pcs.append(pc)
        self.watches.append(watch)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        with gathering_on([self.ns.host_address]):
            await pc.setLocalDescription(await pc.createAnswer())
        return pc, watch, pc.localDescription.sdp

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()
        for watch in self.watches:
            for task in watch.tasks:
                task.cancel()
            await asyncio.gather(*watch.tasks, return_exceptions=True)


@pytest.fixture
async def peers(janus: JanusProcess) -> AsyncIterator[Peers]:
    made = Peers(janus.ns)
    yield made
    await made.close()


@pytest.fixture
async def own_peers(own_janus: JanusProcess) -> AsyncIterator[Peers]:
    made = Peers(own_janus.ns)
    yield made
    await made.close()


def spec(room: str) -> RoomSpec:
    return RoomSpec(room=room, title=f"Workshop {room}", max_publishers=6, max_participants=60)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


async def publish(
    provider: JanusRooms, peers: Peers, media: GeneratedMedia, room: str, who: str
) -> RTCPeerConnection:
    """``who`` publishes and Janus reports the feed."""
    pc, offer = await peers.publisher(media)
    negotiated = await provider.publish(room, who, offer)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=negotiated.sdp, type="answer"))
    await eventually(
        lambda: who in {f.participant for f in provider.feeds(room)},
        what=f"Janus reporting {who}'s feed",
    )
    return pc


async def subscribe(
    provider: JanusRooms, peers: Peers, room: str, who: str, feed: str
) -> tuple[RTCPeerConnection, Watch, str]:
    """``who`` subscribes to ``feed``; the subscription's peer, what it decodes, its resource."""
    offered = await provider.subscribe(room, who, feed)
    pc, watch, answer = await peers.answer(offered.sdp)
    await provider.complete(offered.resource, answer)
    return pc, watch, offered.resource


# --- the tests ---------------------------------------------------------------------------------


async def test_two_publishers_and_a_subscriber_who_sees_both(
    rooms: tuple[JanusRooms, Heard], peers: Peers, media: GeneratedMedia, janus: JanusProcess
) -> None:
    provider, heard = rooms
    room = unique("workshop")
    # Idempotent, also when two calls cross: one room, one watch handle of hybridcon's.
    await asyncio.gather(provider.ensure_room(spec(room)), provider.ensure_room(spec(room)))
    await provider.ensure_room(spec(room))
    assert await participants(janus, room) == ["hybridcon"]

    await publish(provider, peers, media, room, "alice")
    await publish(provider, peers, media, room, "bob")
    assert provider.feeds(room) == [
        Feed("alice", audio=True, video=True),
        Feed("bob", audio=True, video=True),
    ]
    await eventually(
        lambda: (
            heard.saw(RoomEventKind.PUBLISHING, "alice")
            and heard.saw(RoomEventKind.PUBLISHING, "bob")
        ),
        what="PUBLISHING for both",
    )
    publishing = [e for e in heard.events if e.kind == RoomEventKind.PUBLISHING]
    assert all(e.room == room and e.audio and e.video for e in publishing)

    _pc1, of_alice, _ = await subscribe(provider, peers, room, "carol", "alice")
    _pc2, of_bob, _ = await subscribe(provider, peers, room, "carol", "bob")
    await asyncio.wait_for(of_alice.enough.wait(), 10)
    await asyncio.wait_for(of_bob.enough.wait(), 10)
    assert of_alice.sizes == {(media.width, media.height)}
    assert of_bob.sizes == {(media.width, media.height)}
    await eventually(lambda: of_alice.audio_frames > 10 and of_bob.audio_frames > 10)


async def test_mute_stops_the_audio_arriving_and_unmute_brings_it_back(
    rooms: tuple[JanusRooms, Heard], peers: Peers, media: GeneratedMedia
) -> None:
    provider, _heard = rooms
    room = unique("mute")
    await provider.ensure_room(spec(room))
    await publish(provider, peers, media, room, "alice")
    _pc, watch, _ = await subscribe(provider, peers, room, "bob", "alice")
    await eventually(lambda: watch.audio_frames > 10, timeout=10, what="audio arriving")

    await provider.mute(room, "alice", "audio", True)
    await eventually(lambda: provider.feeds(room)[0].audio_muted, what="the feed shown muted")
    assert not provider.feeds(room)[0].video_muted
    audio_at_mute, video_at_mute = watch.audio_frames, watch.frames
    # A second of video keeps arriving while the audio stands still (a few packets
    # already on their way when Janus stopped forwarding may still land).
    await eventually(lambda: watch.frames >= video_at_mute + 30, timeout=5, what="video")
    assert watch.audio_frames - audio_at_mute <= 5

    await provider.mute(room, "alice", "audio", False)
    audio_at_unmute = watch.audio_frames
    await eventually(lambda: watch.audio_frames > audio_at_unmute + 10, what="audio again")
    assert not provider.feeds(room)[0].audio_muted


async def test_remove_ends_every_peer_connection_of_the_participant(
    rooms: tuple[JanusRooms, Heard], peers: Peers, media: GeneratedMedia
) -> None:
    provider, heard = rooms
    room = unique("remove")
    await provider.ensure_room(spec(room))
    alice_camera = await publish(provider, peers, media, room, "alice")
    await publish(provider, peers, media, room, "bob")
    alice_watching, watch, _ = await subscribe(provider, peers, room, "alice", "bob")
    await asyncio.wait_for(watch.frame_seen.wait(), 10)
    await eventually(lambda: heard.saw(RoomEventKind.PUBLISHING, "alice"))

    await provider.remove(room, "alice")

    await eventually(
        lambda: (
            alice_camera.connectionState == "closed" and alice_watching.connectionState == "closed"
        ),
        timeout=10,
        what="alice's peer connections closed by Janus",
    )
    assert [f.participant for f in provider.feeds(room)] == ["bob"]
    assert heard.saw(RoomEventKind.UNPUBLISHED, "alice")
    assert heard.saw(RoomEventKind.GONE, "alice")
    assert not heard.saw(RoomEventKind.GONE, "bob")


async def test_unpublish_ends_the_camera_and_keeps_the_subscriptions(
    rooms: tuple[JanusRooms, Heard], peers: Peers, media: GeneratedMedia
) -> None:
    provider, heard = rooms
    room = unique("floor")
    await provider.ensure_room(spec(room))
    alice_camera = await publish(provider, peers, media, room, "alice")
    await publish(provider, peers, media, room, "bob")
    alice_watching, watch, _ = await subscribe(provider, peers, room, "alice", "bob")
    await asyncio.wait_for(watch.frame_seen.wait(), 10)
    await eventually(lambda: heard.saw(RoomEventKind.PUBLISHING, "alice"))

    await provider.unpublish(room, "alice")

    await eventually(lambda: alice_camera.connectionState == "closed", timeout=10)
    await eventually(lambda: [f.participant for f in provider.feeds(room)] == ["bob"])
    assert heard.saw(RoomEventKind.UNPUBLISHED, "alice")
    assert not heard.saw(RoomEventKind.GONE, "alice")  # still watching bob
    frames = watch.frames
    await eventually(lambda: watch.frames > frames + 10, what="alice still receiving bob")
    assert alice_watching.connectionState == "connected"

    # The floor given back: alice publishes again.
    await publish(provider, peers, media, room, "alice")
    assert [f.participant for f in provider.feeds(room)] == ["alice", "bob"]


async def test_destroy_ends_the_room(
    rooms: tuple[JanusRooms, Heard], peers: Peers, media: GeneratedMedia, janus: JanusProcess
) -> None:
    provider, heard = rooms
    room = unique("destroy")
    await provider.ensure_room(spec(room))
    camera = await publish(provider, peers, media, room, "alice")
    watching, watch, _ = await subscribe(provider, peers, room, "bob", "alice")
    await asyncio.wait_for(watch.frame_seen.wait(), 10)

    await provider.destroy_room(room)
    await provider.destroy_room(room)  # idempotent

    await eventually(
        lambda: camera.connectionState == "closed" and watching.connectionState == "closed",
        timeout=10,
        what="every peer connection in the room closed",
    )
    assert provider.feeds(room) == []
    assert heard.saw(RoomEventKind.GONE, "alice") and heard.saw(RoomEventKind.GONE, "bob")
    _pc, offer = await peers.publisher(media)
    with pytest.raises(NotFound, match="no media room"):
        await provider.publish(room, "alice", offer)
    # And Janus has no such room any more.
    assert not await room_exists(janus, room)


async def test_a_join_without_the_room_s_token_is_refused(
    rooms: tuple[JanusRooms, Heard], janus: JanusProcess
) -> None:
    provider, _heard = rooms
    room = unique("tokens")
    await provider.ensure_room(spec(room))
    async with janus_session(janus) as session:
        handle = await session.attach()
        for token in ("not-on-the-list", None):
            body = {"request": "join", "ptype": "publisher", "room": room_number(room)}
            if token is not None:
                body["token"] = token
            with pytest.raises(Forbidden, match="Janus refused join: 433 UNAUTHORIZED"):
                await handle.message(body)

    # Only holders of the VideoRoom's admin_key make rooms.
    stranger = JanusRooms(
        janus.url,
        room_key="not-the-room-key-of-this-janus",
        admin_url=janus.admin_url,
        admin_secret=janus.admin_secret,
    )
    await stranger.start()
    try:
        with pytest.raises(Forbidden, match="Janus refused create: 433 UNAUTHORIZED"):
            await stranger.ensure_room(spec(unique("theirs")))
        assert stranger.feeds("theirs") == []
    finally:
        await stranger.stop()

    # Janus's own token_auth: a session without a stored token is refused too.
    connection = JanusConnection(janus.url)
    await connection.connect()
    try:
        with pytest.raises(JanusForbidden, match="403 UNAUTHORIZED") as refused:
            await JanusSession(connection).create()
        assert refused.value.janus_code == 403
    finally:
        await connection.close()


async def test_another_hybridcon_finds_the_room_and_its_feeds(
    rooms: tuple[JanusRooms, Heard], peers: Peers, media: GeneratedMedia, janus: JanusProcess
) -> None:
    """A restarted hybridcon, or another node with the same room key: the room's number and
    secret are derived, so it takes the room over as it is in Janus."""
    provider, _heard = rooms
    room = unique("shared")
    await provider.ensure_room(spec(room))
    await publish(provider, peers, media, room, "alice")

    other = provider_for(janus)
    await other.start()
    try:
        await other.ensure_room(spec(room))  # exists in Janus: no error
        assert [f.participant for f in other.feeds(room)] == ["alice"]
        _pc, watch, _ = await subscribe(other, peers, room, "bob", "alice")
        await asyncio.wait_for(watch.frame_seen.wait(), 10)
        await other.mute(room, "alice", "video", True)  # the derived secret is accepted
        await eventually(lambda: provider.feeds(room)[0].video_muted, what="seen by the first")
    finally:
        await other.stop()
    # A node that stops leaves the shared room to the others: the first still serves it.
    assert await room_exists(janus, room)
    assert [f.participant for f in provider.feeds(room)] == ["alice"]


async def test_bad_input_gets_a_clear_error(
    rooms: tuple[JanusRooms, Heard], peers: Peers, media: GeneratedMedia
) -> None:
    provider, _heard = rooms
    room = unique("bad")
    await provider.ensure_room(spec(room))
    with pytest.raises(Invalid, match="not an SDP session description"):
        await provider.publish(room, "alice", "hello")
    with pytest.raises(Invalid, match="cannot use this SDP"):
        await provider.publish(room, "alice", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n")
    with pytest.raises(NotFound, match="'nobody' is not publishing"):
        await provider.subscribe(room, "alice", "nobody")
    with pytest.raises(NotFound, match="no such subscription"):
        await provider.complete("made-up", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")
    with pytest.raises(NotFound, match="no media room 'elsewhere'"):
        await provider.subscribe("elsewhere", "alice", "bob")
    # The room goes on.
    await publish(provider, peers, media, room, "alice")


async def test_janus_killed_then_back(
    own_janus: JanusProcess, own_peers: Peers, media: GeneratedMedia
) -> None:
    provider = provider_for(own_janus)
    heard = Heard()
    provider.listen(heard)
    await provider.start()
    try:
        room = unique("outage")
        await provider.ensure_room(spec(room))
        await publish(provider, own_peers, media, room, "alice")
        await eventually(lambda: heard.saw(RoomEventKind.PUBLISHING, "alice"))

        own_janus.kill()

        await eventually(lambda: not provider.ready, what="ready False once Janus is gone")
        await eventually(lambda: heard.saw(RoomEventKind.PROVIDER_DOWN))
        assert heard.saw(RoomEventKind.UNPUBLISHED, "alice")
        assert heard.saw(RoomEventKind.GONE, "alice")
        assert provider.feeds(room) == []
        _pc, offer = await own_peers.publisher(media)
        for call in (
            provider.publish(room, "alice", offer),
            provider.ensure_room(spec(unique("new"))),
            provider.mute(room, "alice", "audio", True),
        ):
            with pytest.raises(Unavailable, match=r"^the video server \(Janus\) is not reachable$"):
                await call

        own_janus.start()

        await eventually(lambda: provider.ready, timeout=10, what="ready again")
        assert heard.events[-1] == RoomEvent(RoomEventKind.PROVIDER_UP, "")
        assert await room_exists(own_janus, room), "the room was made again"
        await publish(provider, own_peers, media, room, "alice")
        _pc2, watch, _ = await subscribe(provider, own_peers, room, "bob", "alice")
        await asyncio.wait_for(watch.enough.wait(), 10)
    finally:
        await provider.stop()


async def test_started_while_janus_is_down(own_janus: JanusProcess) -> None:
    own_janus.kill()
    provider = provider_for(own_janus)
    heard = Heard()
    provider.listen(heard)
    await provider.start()
    try:
        assert not provider.ready
        assert heard.events == [RoomEvent(RoomEventKind.PROVIDER_DOWN, "")]
        with pytest.raises(Unavailable, match="not reachable"):
            await provider.ensure_room(spec("early"))
        own_janus.start()
        await eventually(lambda: provider.ready, timeout=10, what="connected once Janus is up")
        assert heard.events[-1] == RoomEvent(RoomEventKind.PROVIDER_UP, "")
        await provider.ensure_room(spec("early"))
        assert await room_exists(own_janus, "early")
    finally:
        await provider.stop()
    assert await room_exists(own_janus, "early"), "a stopping node leaves the rooms in Janus"


async def test_no_janus_at_the_url_is_a_clear_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"ws://127.0.0.1:{port}"
    connection = JanusConnection(url, timeout=2)
    with pytest.raises(Unavailable, match=rf"the video server \(Janus\) is not reachable at {url}"):
        await connection.connect()
    provider = JanusRooms(url, room_key="a-room-key-long-enough", timeout=2, backoff_max=0.2)
    await provider.start()
    try:
        assert not provider.ready
        with pytest.raises(Unavailable, match=r"^the video server \(Janus\) is not reachable$"):
            await provider.subscribe("room", "alice", "bob")
    finally:
        await provider.stop()


def test_from_settings(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        janus_url="ws://10.0.0.5:8188",
        janus_admin_url="ws://10.0.0.5:7188",
    )
    with pytest.raises(ConfigError, match=r"admin_secret.*no file at .*janus-admin\.secret"):
        JanusRooms.from_settings(settings)
    (tmp_path / "keys").mkdir(exist_ok=True)
    settings.janus_admin_secret_path.write_text("an admin secret of Janus's\n")
    provider = JanusRooms.from_settings(settings)
    assert provider.url == "ws://10.0.0.5:8188"
    assert provider.admin is not None and provider.admin.secret == "an admin secret of Janus's"
    key_file = settings.janus_room_key_path
    assert provider.room_key == key_file.read_text().strip()  # made on first use
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert JanusRooms.from_settings(settings).room_key == provider.room_key  # and kept

    with pytest.raises(ValueError, match="is not a ws:// or wss:// URL"):
        Settings(_env_file=None, janus_url="http://janus:8088")  # type: ignore[call-arg]
