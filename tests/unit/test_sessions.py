"""Online workshop rules with a fake clock: lobby, capacity, floor, hands, breakouts,
removal, attendance."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridcon.core.sessions import (
    Phase,
    Place,
    SessionRole,
    Workshop,
    group_of,
    session_role,
)
from hybridcon.core.tokens import Claims, Role
from hybridcon.errors import Closed, Conflict, Forbidden, Invalid, NotFound

T0 = datetime(2022, 5, 5, 11, 30, tzinfo=UTC)
HOST, SPEAKER, PART = SessionRole.HOST, SessionRole.SPEAKER, SessionRole.PARTICIPANT


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def claims(role: Role, *scopes: str) -> Claims:
    return Claims(
        sub="u:x",
        role=role,
        scopes=scopes,
        name="X",
        jti="j",
        iss="i",
        aud="a",
        iat=T0,
        nbf=T0,
        exp=T0 + timedelta(hours=1),
    )


def workshop(capacity: int = 60, max_publishers: int = 6) -> Workshop:
    return Workshop("online-1", capacity=capacity, max_publishers=max_publishers)


def test_roles_come_from_the_token_and_its_scope():
    assert session_role(claims(Role.MODERATOR, "session:online-1"), "online-1") is HOST
    assert session_role(claims(Role.ORGANISER, "*"), "online-1") is HOST
    assert session_role(claims(Role.SPEAKER, "session:online-1"), "online-1") is SPEAKER
    assert session_role(claims(Role.VIEWER, "session:online-1"), "online-1") is PART
    with pytest.raises(Forbidden, match="session:online-1"):
        session_role(claims(Role.MODERATOR, "session:online-2"), "online-1")


def test_the_lobby_is_first_come_first_served_and_opening_admits_in_order():
    w = workshop(capacity=3)
    assert w.join("host", "Hanne", HOST, at(0)).place is Place.ADMITTED  # hosts go in
    for i, uid in enumerate(["a", "b", "c", "d"], start=1):
        joined = w.join(uid, uid.upper(), PART, at(i))
        assert (joined.place, joined.position) == (Place.LOBBY, i)
        assert "not opened yet" in (joined.message or "")
    admitted = w.open(at(10))
    # Capacity 3 with the host in: two places, given in the order people came.
    assert [m.user_id for m in admitted] == ["a", "b"]
    assert list(w.lobby) == ["c", "d"] and w.position("d") == 2
    assert admitted[0].waited_seconds == 9
    assert "full (3 of 3 places)" in w.waiting_message(1)
    with pytest.raises(Conflict, match="full"):
        w.admit("d", at(11))
    # A place frees up; without auto_admit a host lets the next one in.
    w.leave("a", at(12))
    assert w.refill(at(12)) == [] and "c" in w.lobby
    assert w.admit("d", at(13)).user_id == "d"  # a host may pick out of turn
    assert list(w.lobby) == ["c"]


def test_late_comers_wait_for_a_host_unless_auto_admit():
    w = workshop(capacity=2)
    w.open(at(0))
    late = w.join("a", "A", PART, at(1))
    assert late.place is Place.LOBBY and "host will let you in" in (late.message or "")
    assert [m.user_id for m in w.admit_all(at(2))] == ["a"]

    auto = workshop(capacity=2)
    auto.open(at(0), auto_admit=True)
    assert auto.join("a", "A", PART, at(1)).place is Place.ADMITTED
    assert auto.join("b", "B", PART, at(2)).place is Place.ADMITTED
    assert auto.join("c", "C", PART, at(3)).place is Place.LOBBY  # full
    auto.leave("a", at(4))
    assert [m.user_id for m in auto.refill(at(4))] == ["c"]


def test_speakers_and_hosts_enter_over_capacity_and_before_opening():
    w = workshop(capacity=1)
    w.join("p", "P", PART, at(0))
    w.open(at(1))
    assert w.full
    assert w.join("s", "S", SPEAKER, at(2)).place is Place.ADMITTED
    assert len(w.members) == 2


def test_one_join_per_person_and_removed_people_stay_out():
    w = workshop()
    w.open(at(0))
    w.join("h", "H", HOST, at(0))
    w.join("a", "A", PART, at(1))
    with pytest.raises(Conflict, match="already"):
        w.join("a", "A", PART, at(2))
    w.admit("a", at(2))
    departure = w.remove("a", at(32))
    assert departure is not None and departure.reason == "removed" and departure.seconds == 30
    with pytest.raises(Forbidden, match="removed"):
        w.join("a", "A", PART, at(40))
    with pytest.raises(Forbidden, match="removed"):
        w.access("a")
    with pytest.raises(Forbidden, match="hosts cannot be removed"):
        w.remove("h", at(41))
    # Removing someone from the lobby keeps them out too.
    w.join("b", "B", PART, at(42))
    assert w.remove("b", at(43)) is None
    with pytest.raises(Forbidden):
        w.join("b", "B", PART, at(44))


def test_the_floor_is_capped_and_held_by_role():
    w = workshop(max_publishers=3)
    w.open(at(0))
    w.join("h", "H", HOST, at(0))
    w.join("s", "S", SPEAKER, at(0))
    for uid in "abc":
        w.join(uid, uid, PART, at(1))
    w.admit_all(at(1))
    assert not w.access("a").may_publish and w.access("h").may_publish
    assert w.access("h").host and not w.access("s").host
    w.floor("a", True, at(2))
    assert w.access("a").may_publish
    with pytest.raises(Conflict, match="at most 3 people"):
        w.floor("b", True, at(3))
    with pytest.raises(Invalid, match="by role"):
        w.floor("s", False, at(3))
    w.floor("a", False, at(4))
    w.floor("b", True, at(4))
    assert [m.user_id for m in w.floor_holders()] == ["h", "s", "b"]


def test_hands_queue_in_order_and_the_host_takes_the_next():
    w = workshop(max_publishers=2)
    w.open(at(0))
    w.join("h", "H", HOST, at(0))
    for uid in "abc":
        w.join(uid, uid, PART, at(0))
    w.admit_all(at(0))
    assert w.hand("b", True) and w.hand("a", True) and w.hand("c", True)
    assert not w.hand("b", True)  # raising twice keeps the place
    assert w.hands == ["b", "a", "c"]
    assert w.hand("a", False) and w.hands == ["b", "c"]
    assert w.next_hand(at(1)).user_id == "b"
    assert w.hands == ["c"] and w.access("b").may_publish
    with pytest.raises(Invalid, match="hold the floor"):
        w.hand("b", True)
    with pytest.raises(Conflict, match="floor is full"):
        w.next_hand(at(2))  # host + b hold it; c keeps their hand up
    assert w.hands == ["c"]
    w.hand("c", False)
    with pytest.raises(NotFound, match="no hand"):
        w.next_hand(at(3))


def test_mute_one_or_all_but_hosts():
    w = workshop()
    w.open(at(0))
    w.join("h", "H", HOST, at(0))
    for uid in "ab":
        w.join(uid, uid, PART, at(0))
    w.admit_all(at(0))
    assert [m.user_id for m in w.mute("a", "audio", True, at(1))] == ["a"]
    assert [m.user_id for m in w.mute(None, "audio", True, at(2))] == ["b"]
    with pytest.raises(Forbidden):
        w.mute("h", "video", True, at(3))
    with pytest.raises(NotFound):
        w.mute("nobody", "video", True, at(3))


def test_random_breakouts_are_deterministic_with_a_seeded_source_and_come_back():
    def split(seed: int) -> list[list[str]]:
        w = workshop(max_publishers=4)
        w.open(at(0))
        w.join("h", "H", HOST, at(0))
        for uid in "abcdefg":
            w.join(uid, uid, PART, at(0))
        w.admit_all(at(0))
        rooms = w.start_breakouts(at(1), random.Random(seed), count=2)
        assert rooms == ["online-1~1", "online-1~2"]
        assert w.access("h").room == "online-1"  # hosts stay in the main room
        groups = [sorted(m.user_id for m in w.members.values() if m.group == n) for n in (1, 2)]
        assert w.access(groups[0][0]).room == "online-1~1"
        assert w.access(groups[0][0]).may_publish  # everyone talks in a group
        w.end_breakouts(at(2))
        assert {m.group for m in w.members.values()} == {0}
        assert not w.access("a").may_publish
        return groups

    first = split(7)
    assert first == split(7)
    assert sorted(len(g) for g in first) == [3, 4]
    assert sorted(u for g in first for u in g) == list("abcdefg")


def test_breakouts_refuse_groups_too_big_and_bad_plans():
    w = workshop(max_publishers=3)
    w.open(at(0))
    for uid in "abcdefg":
        w.join(uid, uid, PART, at(0))
    w.admit_all(at(0))
    with pytest.raises(Invalid, match="at least 3 groups"):
        w.start_breakouts(at(1), random.Random(1), count=2)
    with pytest.raises(Invalid, match="either count"):
        w.start_breakouts(at(1), random.Random(1))
    with pytest.raises(Invalid, match="two groups"):
        w.start_breakouts(at(1), random.Random(1), groups=[["a"], ["a", "b"]])
    with pytest.raises(Invalid, match="not in the session"):
        w.start_breakouts(at(1), random.Random(1), groups=[["a", "zz"]])
    with pytest.raises(Conflict, match="no breakout"):
        w.end_breakouts(at(1))


def test_breakouts_by_hand_with_a_timer():
    w = workshop()
    w.open(at(0))
    w.join("h", "H", HOST, at(0))
    for uid in "abc":
        w.join(uid, uid, PART, at(0))
    w.admit_all(at(0))
    w.start_breakouts(at(10), random.Random(0), groups=[["a", "h"], ["b"]], minutes=5)
    assert w.access("h").room == "online-1~1" and w.access("c").room == "online-1"
    assert w.public()["breakouts"] == {"groups": 2, "ends_at": at(310).isoformat()}
    with pytest.raises(Conflict, match="running"):
        w.start_breakouts(at(11), random.Random(0), count=1)
    assert not w.tick(at(309))
    assert w.tick(at(310))
    assert w.breakouts is None and w.access("a").room == "online-1"
    assert group_of("online-1", "online-1~2") == 2 and group_of("online-1", "online-2") is None


def test_attendance_counts_presence_floor_and_publishing():
    w = workshop()
    w.open(at(0))
    w.join("a", "A", PART, at(0))
    w.admit("a", at(10))
    w.floor("a", True, at(20))
    assert w.publishing("a", True, True, at(25))
    w.mute("a", "audio", True, at(45))  # a host mute stops the microphone's count
    w.publishing("a", False, False, at(55))
    w.floor("a", False, at(60))
    departure = w.leave("a", at(70))
    assert departure is not None
    assert (departure.seconds, departure.floor_seconds) == (60, 40)
    assert (departure.audio_seconds, departure.video_seconds) == (20, 30)
    assert not w.publishing("a", True, True, at(80))  # gone: ignored


def test_ending_closes_everyone_and_nobody_comes_back():
    w = workshop()
    w.join("h", "H", HOST, at(0))
    w.join("a", "A", PART, at(0))
    w.open(at(5))
    departures = w.end(at(65))
    assert {(d.user_id, d.reason, d.seconds) for d in departures} == {
        ("h", "ended", 65),
        ("a", "ended", 60),
    }
    assert w.phase is Phase.ENDED and not w.members
    with pytest.raises(Closed):
        w.join("b", "B", PART, at(70))
    with pytest.raises(Forbidden, match="ended"):
        w.access("h")
    with pytest.raises(Closed):
        w.open(at(70))


PEOPLE = ["h", "s", "a", "b", "c", "d"]
ROLES = {"h": HOST, "s": SPEAKER}
# Weighted towards what builds up a session, so that the limits are reached often.
ACTIONS = (
    ["join"] * 4
    + ["open", "admit", "leave", "remove", "unfloor", "next", "split", "back", "tick"]
    + ["admit_all", "floor", "hand"] * 3
    + ["publish", "mute"]
)
STEP = st.tuples(st.sampled_from(ACTIONS), st.sampled_from(PEOPLE), st.integers(0, 400))


@given(st.lists(STEP, max_size=60), st.booleans())
@settings(max_examples=200, deadline=None)
def test_no_sequence_of_requests_breaks_the_rules(steps, auto_admit):
    w = workshop(capacity=4, max_publishers=2)
    rng = random.Random(0)
    for n, (action, uid, seconds) in enumerate(steps):
        now = at(n * 10)
        refused = False
        try:
            match action:
                case "join":
                    w.join(uid, uid, ROLES.get(uid, PART), now)
                case "leave":
                    w.leave(uid, now)
                    w.refill(now)
                case "open":
                    w.open(now, auto_admit=auto_admit)
                case "admit":
                    w.admit(uid, now)
                case "admit_all":
                    w.admit_all(now)
                case "remove":
                    w.remove(uid, now)
                case "floor" | "unfloor":
                    w.floor(uid, action == "floor", now)
                case "hand":
                    w.hand(uid, seconds % 2 == 0)
                case "next":
                    w.next_hand(now)
                case "split":
                    w.start_breakouts(now, rng, count=1 + seconds % 3, minutes=1 + seconds % 5)
                case "back":
                    w.end_breakouts(now)
                case "tick":
                    w.tick(at(n * 10 + seconds))
                case "publish":
                    w.publishing(uid, seconds % 2 == 0, seconds % 3 == 0, now)
                case "mute":
                    w.mute(None if seconds % 2 else uid, "audio", True, now)
        except (Closed, Conflict, Forbidden, Invalid, NotFound):
            refused = True  # with a clear error; the state must still hold together
        assert not set(w.lobby) & set(w.members)
        assert not w.removed & (set(w.members) | set(w.lobby))
        participants = [m for m in w.members.values() if m.role is PART]
        assert len(participants) <= w.capacity
        if action == "floor" and not refused:
            # A grant never takes the holders past the cap (role holders may, alone).
            assert len(w.floor_holders()) <= w.max_publishers
        assert all(h in w.members and not w.members[h].holds_floor for h in w.hands)
        assert len(set(w.hands)) == len(w.hands)
        if w.breakouts is None:
            assert all(m.group == 0 for m in w.members.values())
