"""Online workshops over real WebSockets and a real PostgreSQL: lobby, opening, hands,
floor, mute, removal, breakouts, the end, attendance in the engagement log.

The room provider is a recording stand-in: the real ones (rooms/builtin.py, rooms/janus.py)
are built beside this capability and need WebRTC peers; what is checked here is that the
session rules drive a provider (which calls, when) and that its outage reaches the host
as a clear error. The media gate's answers are asked of the running capability.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hybridcon.core.engagement import actor_hash
from hybridcon.core.rooms import Feed, MediaKind, Negotiated, RoomEvent, RoomEventKind, RoomSpec
from hybridcon.core.tokens import Role
from hybridcon.errors import Forbidden, NotFound, Unavailable
from hybridcon.realtime.gateway import GATEWAY
from hybridcon.realtime.sessions import Sessions
from support import WsClient, eventually, issue, services_of

SESSION = "online-1"
TOPIC = f"session:{SESSION}"


class RecordingProvider:
    """Records what the sessions ask of a room provider; ``down`` makes it unreachable."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.down = False
        self.listeners: list[Any] = []

    @property
    def ready(self) -> bool:
        return not self.down

    def listen(self, listener: Any) -> None:
        self.listeners.append(listener)

    def report(self, event: RoomEvent) -> None:
        for listener in self.listeners:
            listener(event)

    def _call(self, *call: Any) -> None:
        if self.down:
            raise Unavailable("the media server is not reachable")
        self.calls.append(call)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ensure_room(self, spec: RoomSpec) -> None:
        self._call("ensure_room", spec.room)

    async def destroy_room(self, room: str) -> None:
        self._call("destroy_room", room)

    async def publish(self, room: str, participant: str, offer: str) -> Negotiated:
        raise AssertionError("no media is negotiated in these tests")

    async def subscribe(self, room: str, participant: str, feed: str) -> Negotiated:
        raise AssertionError("no media is negotiated in these tests")

    async def complete(self, resource: str, answer: str) -> None:
        raise AssertionError("no media is negotiated in these tests")

    async def end(self, resource: str) -> None:
        return None

    async def mute(self, room: str, participant: str, kind: MediaKind, muted: bool) -> None:
        self._call("mute", room, participant, kind, muted)

    async def unpublish(self, room: str, participant: str) -> None:
        self._call("unpublish", room, participant)

    async def remove(self, room: str, participant: str) -> None:
        self._call("remove", room, participant)

    def feeds(self, room: str) -> list[Feed]:
        return []


@pytest.fixture
def settings(make_settings):
    return make_settings(room_max_participants=4, room_max_publishers=3)


def sessions_of(client) -> Sessions:
    return client.server.app[GATEWAY].capability(Sessions)


async def person(client, sub: str, role: Role = Role.VIEWER, scope: str = TOPIC) -> WsClient:
    ws = await WsClient.connect(client, issue(client, role, (scope,), sub=sub, name=sub[2:]))
    await ws.ok("subscribe", topic=TOPIC)
    return ws


async def state_where(ws: WsClient, check, timeout: float = 5.0) -> dict[str, Any]:
    """The first ``session.state`` push that satisfies ``check`` (states are coalesced)."""
    while True:
        state = await ws.push("session.state", timeout=timeout)
        if check(state):
            return state


async def test_a_workshop_from_lobby_to_end(client):
    provider = RecordingProvider()
    sessions = sessions_of(client)
    sessions.attach_provider(provider)
    host = await person(client, "u:hanne", Role.MODERATOR)
    await host.ok("subscribe", topic=f"mod:{TOPIC}")
    speaker = await person(client, "u:sam", Role.SPEAKER)
    p1, p2, p3 = [await person(client, f"u:{n}") for n in ("ann", "bob", "cas")]

    # Before the opening, participants wait in order; hosts and speakers go in.
    for n, p in enumerate((p1, p2, p3), start=1):
        waiting = await p.ok("session.join", session=SESSION)
        assert (waiting["state"], waiting["role"], waiting["position"]) == (
            "lobby",
            "participant",
            n,
        )
        assert "not opened yet" in waiting["message"]
    assert (await host.ok("session.join", session=SESSION))["role"] == "host"
    assert (await speaker.ok("session.join", session=SESSION))["state"] == "admitted"
    lobby = await host.push("session.lobby")
    assert [w["id"] for w in lobby["lobby"]] == ["u:ann", "u:bob", "u:cas"]
    refused = await p1.request("session.open", session=SESSION)
    assert refused["code"] == "forbidden" and "hosts" in refused["message"]
    with pytest.raises(Forbidden, match="lobby"):
        sessions.media_access(SESSION, _claims(client, p1))

    # Opening lets the queue in while there is room (4: host, speaker and two).
    opened = await host.ok("session.open", session=SESSION)
    assert opened["admitted"] == ["u:ann", "u:bob"] and opened["waiting"] == 1
    assert ("ensure_room", SESSION) in provider.calls
    admitted = await p1.push("session.admitted")
    assert (admitted["role"], admitted["room"]) == ("participant", SESSION)
    full = await p3.push("session.waiting")
    assert full["position"] == 1 and "full (4 of 4 places)" in full["message"]
    access = sessions.media_access(SESSION, _claims(client, p1))
    assert (access.room, access.may_publish, access.host) == (SESSION, False, False)
    assert sessions.media_access(SESSION, _claims(client, speaker)).may_publish

    # Chat on the session topic is the chat's (no second copy).
    await p1.ok("chat.send", topic=TOPIC, text="Hallo allemaal")
    assert (await p2.push("chat.message"))["text"] == "Hallo allemaal"
    # So are polls and questions.
    poll = await host.ok(
        "poll.create",
        topics=[TOPIC],
        question="Klaar?",
        kind="single",
        options=["ja", "nee"],
        open=True,
    )
    assert (await p2.push("poll.opened"))["poll_id"] == poll["poll_id"]
    voted = await p1.ok("poll.vote", poll_id=poll["poll_id"], choice=poll["options"][0]["id"])
    assert voted["outcome"] == "counted"
    asked = await p2.ok("qa.ask", topic=TOPIC, text="Mag ik iets vragen?")
    assert asked["topic"] == TOPIC

    # Hands queue; the host gives the floor to the next; the floor is capped.
    assert (await p1.ok("session.hand", session=SESSION, raised=True))["position"] == 1
    assert (await p2.ok("session.hand", session=SESSION, raised=True))["position"] == 2
    await state_where(host, lambda s: s["hands"] == ["u:ann", "u:bob"])
    assert (await host.ok("session.next_hand", session=SESSION))["user_id"] == "u:ann"
    assert (await p1.push("session.floor"))["granted"] is True
    assert sessions.media_access(SESSION, _claims(client, p1)).may_publish
    capped = await host.request("session.floor", session=SESSION, user_id="u:bob", grant=True)
    assert capped["code"] == "conflict" and "at most 3 people" in capped["message"]
    await host.ok("session.floor", session=SESSION, user_id="u:ann", grant=False)
    assert (await p1.push("session.floor"))["granted"] is False
    assert ("unpublish", SESSION, "u:ann") in provider.calls

    # Attendance counts what the provider reports.
    provider.report(RoomEvent(RoomEventKind.PUBLISHING, SESSION, "u:sam", audio=True, video=True))
    await state_where(host, lambda s: any(p["id"] == "u:sam" and p["video"] for p in s["people"]))

    # Mute one; remove another, who cannot come back; the host lets the next one in.
    muted = await host.ok("session.mute", session=SESSION, user_id="u:bob", kind="audio")
    assert muted["user_ids"] == ["u:bob"]
    assert (await p2.push("session.muted"))["kind"] == "audio"
    assert ("mute", SESSION, "u:bob", "audio", True) in provider.calls
    await host.ok("session.remove", session=SESSION, user_id="u:bob")
    assert (await p2.push("session.left"))["reason"] == "removed"
    assert ("remove", SESSION, "u:bob") in provider.calls
    again = await p2.request("session.join", session=SESSION)
    assert again["code"] == "forbidden" and "removed" in again["message"]
    assert (await host.ok("session.admit", session=SESSION))["admitted"] == ["u:cas"]
    await p3.push("session.admitted")

    # Breakouts: two random groups of the non-hosts, their rooms made, then back.
    split = await host.ok("session.breakouts", session=SESSION, count=2, minutes=10)
    assert split["rooms"] == [f"{SESSION}~1", f"{SESSION}~2"] and split["groups"] == 2
    assert ("ensure_room", f"{SESSION}~2") in provider.calls
    grouped = await state_where(p1, lambda s: s["breakouts"] is not None)
    rooms = {p["id"]: p["room"] for p in grouped["people"]}
    assert rooms["u:hanne"] == SESSION and rooms["u:ann"].startswith(f"{SESSION}~")
    in_group = sessions.media_access(SESSION, _claims(client, p1))
    assert in_group.room == rooms["u:ann"] and in_group.may_publish
    await host.ok("session.breakouts.end", session=SESSION)
    await state_where(p1, lambda s: s["breakouts"] is None)
    assert ("destroy_room", f"{SESSION}~1") in provider.calls
    assert sessions.media_access(SESSION, _claims(client, p1)).room == SESSION

    # p1 leaves and comes back in through the lobby; the host ends the session.
    await p1.ok("session.leave", session=SESSION)
    assert (await p1.ok("session.join", session=SESSION))["state"] == "lobby"
    ended = await host.ok("session.end", session=SESSION)
    assert ended["state"] == "ended" and ended["people"] == 3
    await state_where(p3, lambda s: s["state"] == "ended")
    assert ("destroy_room", SESSION) in provider.calls
    late = await p1.request("session.join", session=SESSION)
    assert late["code"] == "closed"

    # Attendance: one join and one leave per stay, with the seconds.
    services = services_of(client)
    pool = services.db()
    ann = actor_hash(services.actor_key, "u:ann")

    async def rows() -> list[Any]:
        return await pool.fetch(
            "SELECT kind, actor, topic, data FROM engagement_events "
            "WHERE kind IN ('session_join', 'session_leave') ORDER BY ts, id"
        )

    async def all_in() -> bool:
        return sum(r["kind"] == "session_leave" for r in await rows()) == 5

    await eventually(all_in, what="the session's attendance rows")
    got = await rows()
    assert {r["topic"] for r in got} == {TOPIC}
    mine = [(r["kind"], _data(r).get("reason")) for r in got if r["actor"] == ann]
    assert mine == [("session_join", None), ("session_leave", "left")]
    leaves = {r["actor"]: _data(r) for r in got if r["kind"] == "session_leave"}
    sam = leaves[actor_hash(services.actor_key, "u:sam")]
    assert sam["session_role"] == "speaker" and sam["reason"] == "ended"
    assert sam["seconds"] >= sam["floor_seconds"] >= 0 and "video_seconds" in sam
    bob = leaves[actor_hash(services.actor_key, "u:bob")]
    assert bob["reason"] == "removed" and bob["role"] == "viewer"
    for ws in (host, speaker, p1, p2, p3):
        await ws.close()


def _data(row: Any) -> dict[str, Any]:
    data = row["data"]
    return dict(orjson.loads(data) if isinstance(data, str | bytes) else data)


def _claims(client, ws: WsClient):
    """The verified claims of a connected test person (as the media routes would have)."""
    gateway = client.server.app[GATEWAY]
    for conn in gateway.connections:
        if conn.claims.sub == ws.user["id"]:
            return conn.claims
    raise AssertionError(f"{ws.user['id']} is not connected")


async def test_a_host_of_another_session_is_refused(client):
    other_host = await WsClient.connect(
        client, issue(client, Role.MODERATOR, ("session:online-2",), sub="u:host2")
    )
    for kind in ("session.open", "session.end", "session.join"):
        reply = await other_host.request(kind, session=SESSION)
        assert reply["code"] == "forbidden" and TOPIC in reply["message"], reply
    reply = await other_host.request("session.remove", session="online-2", user_id="u:nobody")
    assert reply["code"] == "not_found"  # their own session: the person is not in it
    stream = await other_host.request("session.join", session="openingsshow")
    assert stream["code"] == "invalid" and "not an online room" in stream["message"]
    sessions = sessions_of(client)
    with pytest.raises(NotFound, match="no session"):
        sessions.media_access("no-such-session", _claims(client, other_host))
    with pytest.raises(NotFound, match="not an online room"):
        sessions.media_access("openingsshow", _claims(client, other_host))
    with pytest.raises(Forbidden, match=TOPIC):
        sessions.media_access(SESSION, _claims(client, other_host))
    await other_host.close()


async def test_a_flood_of_hands_is_rate_limited_and_the_room_goes_on(client):
    host = await person(client, "u:host", Role.MODERATOR)
    flooder = await person(client, "u:flo")
    calm = await person(client, "u:cal")
    await host.ok("session.join", session=SESSION)
    for p in (flooder, calm):
        await p.ok("session.join", session=SESSION)
    await host.ok("session.open", session=SESSION)
    replies = [
        await flooder.request("session.hand", session=SESSION, raised=i % 2 == 0) for i in range(25)
    ]
    limited = [r for r in replies if r["type"] == "error"]
    assert limited and all(r["code"] == "rate_limited" for r in limited)
    assert "hand too often" in limited[0]["message"]
    assert len(limited) >= 20  # a burst of 4, then about one change every 2 s
    # Everyone else carries on: a hand, the host's next, the flooder still connected.
    await calm.ok("session.hand", session=SESSION, raised=True)
    hands = (await host.ok("session.next_hand", session=SESSION))["hands"]
    assert "u:cal" not in hands
    assert (await calm.push("session.floor"))["granted"] is True
    assert (await flooder.ok("ping"))["ts"]
    for ws in (host, flooder, calm):
        await ws.close()


async def test_a_second_join_from_the_same_person(client):
    host = await person(client, "u:host", Role.MODERATOR)
    await host.ok("session.join", session=SESSION)
    await host.ok("session.open", session=SESSION, auto_admit=True)
    laptop = await person(client, "u:dirk")
    assert (await laptop.ok("session.join", session=SESSION))["state"] == "admitted"
    again = await laptop.request("session.join", session=SESSION)
    assert again["code"] == "conflict" and "already" in again["message"]
    phone = await person(client, "u:dirk")
    refused = await phone.request("session.join", session=SESSION)
    assert refused["code"] == "conflict" and "take_over" in refused["message"]
    moved = await phone.ok("session.join", session=SESSION, take_over=True)
    assert moved["state"] == "admitted"
    assert (await laptop.push("session.left"))["reason"] == "moved"
    # The old connection ending is not the person leaving; the new one's is.
    sessions = sessions_of(client)
    dirk = _claims(client, phone)
    gateway = client.server.app[GATEWAY]

    def connections() -> int:
        return sum(conn.claims.sub == "u:dirk" for conn in gateway.connections)

    await laptop.close()
    await eventually(lambda: connections() == 1, what="the server seeing the laptop go")
    assert sessions.media_access(SESSION, dirk).participant == "u:dirk"
    await phone.close()

    def gone() -> bool:
        try:
            sessions.media_access(SESSION, dirk)
        except Forbidden:
            return True
        return False

    await eventually(gone, what="a disconnect counting as leaving")
    await host.close()


async def test_an_unreachable_media_server_is_a_clear_error(client):
    provider = RecordingProvider()
    provider.down = True
    sessions_of(client).attach_provider(provider)
    host = await person(client, "u:host", Role.MODERATOR)
    await host.ok("session.join", session=SESSION)
    reply = await host.request("session.open", session=SESSION)
    assert reply["code"] == "unavailable" and "media server" in reply["message"]
    snap = await host.ok("subscribe", topic=TOPIC)
    assert snap["snapshot"]["session"]["state"] == "closed"
    assert snap["snapshot"]["session"]["media"] == "down"
    provider.down = False
    assert (await host.ok("session.open", session=SESSION))["state"] == "open"
    await host.close()
