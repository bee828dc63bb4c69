"""Engagement events: the actor pseudonym and the one-line JSON form of an event."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

import orjson
import pytest

from hybridcon.core.engagement import (
    ACTOR_HASH_CHARS,
    EngagementEvent,
    EventKind,
    actor_hash,
    new_event_id,
)
from hybridcon.errors import Invalid

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
NOON = datetime(2022, 10, 6, 12, 0, tzinfo=UTC)


def test_event_kinds_cover_the_contract() -> None:
    required = {
        "join", "leave", "heartbeat", "chat", "chat_moderated", "poll_opened", "poll_vote",
        "poll_closed", "question", "upvote", "reaction", "stream_started", "stream_ended",
        "stream_health", "session_join", "session_leave", "checkin",
    }  # fmt: skip
    assert required <= {kind.value for kind in EventKind}


def test_actor_hash_is_stable_for_one_key() -> None:
    sub = "i:" + uuid.uuid4().hex
    assert actor_hash(KEY, sub) == actor_hash(KEY, sub)


def test_actor_hash_depends_on_key_and_subject() -> None:
    sub = "i:" + uuid.uuid4().hex
    assert actor_hash(KEY, sub) != actor_hash(OTHER_KEY, sub)
    assert actor_hash(KEY, sub) != actor_hash(KEY, sub + "x")


def test_actor_hash_shape() -> None:
    value = actor_hash(KEY, "i:abc")
    assert len(value) == ACTOR_HASH_CHARS
    assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_actor_hash_refuses_a_short_key() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        actor_hash(b"short", "i:abc")


def test_raw_subject_never_reaches_the_line() -> None:
    sub = "i:" + uuid.uuid4().hex
    event = EngagementEvent.new(EventKind.JOIN, ts=NOON, actor=actor_hash(KEY, sub), topic="s:1")
    line = event.to_line()
    assert sub.encode() not in line
    assert uuid.UUID(sub[2:]).hex.encode() not in line
    assert actor_hash(KEY, sub).encode() in line


def test_new_makes_distinct_ids_and_empty_data() -> None:
    a = EngagementEvent.new(EventKind.HEARTBEAT, ts=NOON)
    b = EngagementEvent.new(EventKind.HEARTBEAT, ts=NOON)
    assert a.event_id != b.event_id
    assert a.event_id.version == 4
    assert a.data == {}
    assert a.actor is None
    assert a.topic is None


def test_naive_time_is_refused() -> None:
    with pytest.raises(Invalid, match="timezone"):
        EngagementEvent.new(EventKind.JOIN, ts=datetime(2022, 10, 6, 12, 0))


def test_events_are_hashable_by_id() -> None:
    event = EngagementEvent.new(EventKind.CHAT, ts=NOON, data={"len": 3})
    assert {event: 1}[event] == 1


@pytest.mark.parametrize(
    "event",
    [
        EngagementEvent.new(EventKind.JOIN, ts=NOON),
        EngagementEvent.new(
            EventKind.POLL_VOTE,
            ts=NOON + timedelta(microseconds=123456),
            actor=actor_hash(KEY, "i:1"),
            topic="stage:plenary",
            data={"poll": "p1", "choice": [1, 2], "note": "é\nline\u2028two", "x": None},
        ),
        EngagementEvent.new(
            EventKind.STREAM_HEALTH,
            ts=datetime(2022, 10, 6, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            topic="stage:a",
            data={"fps": 29.97, "nested": {"ok": True}},
        ),
    ],
)
def test_line_round_trip(event: EngagementEvent) -> None:
    line = event.to_line()
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    back = EngagementEvent.from_line(line)
    assert back == event
    assert back.ts == event.ts
    assert back.ts.utcoffset() == event.ts.utcoffset()
    assert EngagementEvent.from_line(line.rstrip(b"\n")) == event


def test_mapping_data_serialises() -> None:
    event = EngagementEvent.new(EventKind.REACTION, ts=NOON, data=MappingProxyType({"e": "👏"}))
    assert EngagementEvent.from_line(event.to_line()).data == {"e": "👏"}
    assert orjson.loads(event.data_json()) == {"e": "👏"}


def test_unserialisable_data_is_invalid() -> None:
    event = EngagementEvent.new(EventKind.CHAT, ts=NOON, data={"when": object()})
    with pytest.raises(Invalid):
        event.to_line()
    with pytest.raises(Invalid):
        event.data_json()


GOOD = EngagementEvent.new(EventKind.JOIN, ts=NOON, actor="a", topic="t").to_line()


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\n",
        GOOD[: len(GOOD) // 2],  # a torn write
        GOOD[:-2],  # cut just before the closing brace
        b"\x00\x00\x00\x00",
        b"[1, 2]\n",
        b'"text"\n',
        GOOD.replace(b'"join"', b'"teleport"'),  # unknown kind
        GOOD.replace(b'"event_id":"', b'"event_id":"zz'),  # not a uuid
        GOOD.replace(b"+00:00", b""),  # naive time
        GOOD.replace(b'"ts":"', b'"ts":"not a time'),
        GOOD.replace(b'"data":{}', b'"data":[]'),
        GOOD.replace(b'"actor":"a"', b'"actor":5'),
        GOOD.replace(b',"topic":"t"', b""),
        b"\xff\xfe garbage",
    ],
)
def test_corrupt_line_is_invalid(line: bytes) -> None:
    with pytest.raises(Invalid):
        EngagementEvent.from_line(line)


def test_event_ids_are_random_version_4_uuids_and_never_repeat() -> None:
    ids = [new_event_id() for _ in range(5000)]  # several draws of the batch
    assert len(set(ids)) == len(ids)
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    # Random bits outside the version and variant: each hex digit takes many values.
    assert all(len({str(i)[n] for i in ids}) == 16 for n in (0, 9, 20, 35))
    assert EngagementEvent.new(EventKind.JOIN, ts=NOON).event_id.version == 4


def test_a_forked_child_draws_ids_of_its_own() -> None:
    new_event_id()  # the parent now holds spare ids
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids to the parent, then leave at once
        os.close(reader)
        os.write(writer, b"".join(new_event_id().bytes for _ in range(100)))
        os._exit(0)
    os.close(writer)
    data = b""
    while chunk := os.read(reader, 65536):
        data += chunk
    os.close(reader)
    os.waitpid(pid, 0)
    theirs = {uuid.UUID(bytes=data[i : i + 16]) for i in range(0, len(data), 16)}
    ours = {new_event_id() for _ in range(300)}
    assert len(theirs) == 100
    assert not theirs & ours
