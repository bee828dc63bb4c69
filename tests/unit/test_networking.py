"""Networking rules with a fake clock: tables of six, roulette pairing that is fair with an
odd number, leaving and reporting, and who may use a table's or a pairing's media."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from hybridcon.core.networking import PAIR_SIZE, TABLE_SIZE, Lounge, room_size, table_room
from hybridcon.errors import Conflict, Forbidden, Invalid, NotFound

T0 = datetime(2022, 5, 5, 12, 45, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_table_seats_six_and_refuses_the_seventh():
    lounge = Lounge()
    first = lounge.join_table("p0", "P0", None, at(0))
    assert first.tables == {"t1"}
    for i in range(1, TABLE_SIZE):
        lounge.join_table(f"p{i}", f"P{i}", "t1", at(i))
    assert len(lounge.tables["t1"]) == 6
    with pytest.raises(Conflict, match="table t1 is full"):
        lounge.join_table("p6", "P6", "t1", at(7))
    # Joining without a table seats the seventh at a new one.
    assert lounge.join_table("p6", "P6", None, at(7)).tables == {"t2"}
    with pytest.raises(NotFound, match="no table 't9'"):
        lounge.join_table("p7", "P7", "t9", at(8))
    # Leaving frees a seat; a table that empties goes.
    lounge.leave("p0", at(9))
    lounge.join_table("p6", "P6", "t1", at(10))
    assert "t2" not in lounge.tables and len(lounge.tables["t1"]) == 6
    assert lounge.table_view("t1")["people"][-1] == {"id": "p6", "name": "P6"}


def test_joining_without_a_table_fills_the_fullest_open_one():
    lounge = Lounge()
    lounge.join_table("a", "A", None, at(0))  # t1
    lounge.join_table("b", "B", None, at(1))  # t1 (fullest with a seat)
    assert lounge.tables == {"t1": ["a", "b"]}


def pairs_of(lounge: Lounge) -> set[frozenset[str]]:
    return {frozenset((p.a, p.b)) for p in lounge.pairs.values()}


def test_roulette_is_fair_with_an_odd_number():
    lounge = Lounge(pair_seconds=180)
    people = ["a", "b", "c", "d", "e"]
    for i, uid in enumerate(people):
        lounge.roulette(uid, uid.upper(), at(i))
    sat_out = [next(u for u in people if u not in lounge.pairs)]
    assert sat_out == ["e"] and len(pairs_of(lounge)) == 2
    met: list[set[frozenset[str]]] = [pairs_of(lounge)]
    for round_ in range(1, 8):
        change = lounge.tick(at(round_ * 180 + 5))
        assert len(change.ended) == 2 and len(change.paired) == 2
        waiting = [u for u in people if u not in lounge.pairs]
        assert len(waiting) == 1
        sat_out.append(waiting[0])
        met.append(pairs_of(lounge))
    # Nobody waits twice in a row, and nobody meets the same partner twice in a row.
    assert all(x != y for x, y in pairwise(sat_out))
    for before, after in pairwise(met):
        assert not before & after
    # Over the rounds everyone sits out at some point.
    assert set(sat_out) == set(people)


def test_a_pairing_ends_after_its_time():
    lounge = Lounge(pair_seconds=120)
    lounge.roulette("a", "A", at(0))
    change = lounge.roulette("b", "B", at(1))
    (pair,) = change.paired
    assert pair.ends_at == at(121) and pair.room.startswith("net~p")
    assert not lounge.tick(at(120)).ended
    ended = lounge.tick(at(121)).ended
    assert [(p.pair_id, reason) for p, reason in ended] == [(pair.pair_id, "time")]
    assert set(lounge.pool) == {"a", "b"}  # they wait for someone new
    assert lounge.roulette("c", "C", at(122)).paired[0].a == "a"


def test_leaving_a_pairing_returns_the_partner_to_the_pool():
    lounge = Lounge()
    lounge.roulette("a", "A", at(0))
    lounge.roulette("b", "B", at(1))
    lounge.roulette("c", "C", at(2))
    change = lounge.leave("a", at(3))
    assert [reason for _, reason in change.ended] == ["left"]
    assert lounge.where("a") is None
    assert frozenset(("b", "c")) in pairs_of(lounge)  # b waited: paired with c at once
    with pytest.raises(Conflict, match="already"):
        lounge.roulette("b", "B", at(4))


def test_reporting_ends_the_pairing_and_they_never_meet_again():
    lounge = Lounge()
    lounge.roulette("a", "A", at(0))
    lounge.roulette("b", "B", at(1))
    where, change = lounge.report("a", "b", at(2))
    assert where.startswith("pair:net~p") and [r for _, r in change.ended] == ["reported"]
    assert "b" not in lounge.pool and "a" in lounge.pool
    lounge.roulette("b", "B", at(3))
    assert not lounge.pairs  # a and b are never paired again
    lounge.roulette("c", "C", at(4))
    assert frozenset(("a", "c")) in pairs_of(lounge)  # a waited longest
    with pytest.raises(NotFound):
        lounge.report("a", "zz", at(5))
    with pytest.raises(Invalid):
        lounge.report("a", "a", at(5))
    lounge.join_table("x", "X", None, at(6))
    lounge.join_table("y", "Y", None, at(6))
    assert lounge.report("x", "y", at(7))[0] == "table:t1"


def test_reported_at_a_table_stands_up_and_does_not_sit_with_the_reporter_again():
    lounge = Lounge()
    for uid in ("x", "y", "z"):
        lounge.join_table(uid, uid.upper(), None, at(0))
    where, change = lounge.report("x", "y", at(1))
    assert where == "table:t1"
    assert change.sent_away == [("t1", "y")] and change.stood == [("t1", "y")]
    assert change.tables == {"t1"} and lounge.tables["t1"] == ["x", "z"]
    assert lounge.where("y") is None
    with pytest.raises(Forbidden, match="not seated at table t1"):
        lounge.media_room("y", "net~t1")
    # Not at the reporter's table again: named, refused; unnamed, seated elsewhere.
    with pytest.raises(Conflict, match="cannot sit at table t1"):
        lounge.join_table("y", "Y", "t1", at(2))
    assert lounge.join_table("y", "Y", None, at(2)).tables == {"t2"}
    # Someone new sits with either.
    assert lounge.join_table("w", "W", None, at(3)).tables == {"t1"}


def test_only_the_people_at_a_table_may_use_its_media():
    lounge = Lounge()
    lounge.join_table("a", "A", None, at(0))
    lounge.join_table("b", "B", None, at(1))
    lounge.join_table("c", "C", None, at(2))
    lounge.leave("c", at(3))
    room = table_room("t1")
    assert room == lounge.table_view("t1")["room"] == "net~t1"
    for uid in ("a", "b"):
        lounge.media_room(uid, room)  # seated: no refusal
    with pytest.raises(Forbidden, match="you are not seated at table t1; sit down there first"):
        lounge.media_room("c", room)
    with pytest.raises(Forbidden):
        lounge.media_room("nobody", room)
    with pytest.raises(NotFound, match="no table t7 now"):
        lounge.media_room("a", "net~t7")
    for bad in ("t1", "net~x1", "online-1", "net~t1/../p1", "net~p"):
        with pytest.raises(NotFound, match="not a networking room"):
            lounge.media_room("a", bad)
    assert room_size(room) == TABLE_SIZE and room_size("net~p3") == PAIR_SIZE
    assert room_size("online-1") == 0


def test_standing_up_names_the_table_whose_media_ends():
    lounge = Lounge()
    lounge.join_table("a", "A", None, at(0))
    lounge.join_table("b", "B", None, at(1))
    # Moving to the roulette stands up from the table; the table stays for b.
    change = lounge.roulette("a", "A", at(2))
    assert change.stood == [("t1", "a")] and "t1" in lounge.tables
    # The last one leaving: the table goes (its room is to be closed).
    change = lounge.leave("b", at(3))
    assert change.stood == [("t1", "b")] and "t1" not in lounge.tables
    # Sitting at the table one is at already changes nothing.
    lounge.join_table("c", "C", None, at(4))
    assert lounge.join_table("c", "C", "t2", at(5)).stood == []


def test_only_the_pair_may_use_the_pairings_media_and_only_while_it_lasts():
    lounge = Lounge(pair_seconds=60)
    lounge.roulette("a", "A", at(0))
    (pair,) = lounge.roulette("b", "B", at(1)).paired
    lounge.roulette("c", "C", at(2))  # waiting: not in the pairing
    for uid in ("a", "b"):
        lounge.media_room(uid, pair.room)
    with pytest.raises(Forbidden, match=f"not in pairing {pair.room}"):
        lounge.media_room("c", pair.room)
    # A pairing that ended is no room any more, for either of them.
    (ended, _reason), *_ = lounge.tick(at(61)).ended
    assert ended.room == pair.room
    for uid in ("a", "b"):
        with pytest.raises((NotFound, Forbidden)):
            lounge.media_room(uid, pair.room)
    with pytest.raises(NotFound, match="no pairing net~p99 now"):
        lounge.media_room("a", "net~p99")
