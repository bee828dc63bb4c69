"""The in-process bus: rising sequence numbers, bounded history, since and resets."""

from __future__ import annotations

from hybridcon.bus.local import LocalBus


def make(history: int = 3) -> tuple[LocalBus, list[tuple[str, bytes]]]:
    got: list[tuple[str, bytes]] = []
    return LocalBus(lambda t, p: got.append((t, p)), history=history, epoch_ms=1000), got


def test_sequence_numbers_rise_by_one_per_topic_from_the_epoch() -> None:
    bus, _ = make()
    assert bus.last_seq("stage:a") == 1000
    assert [bus.next_seq("stage:a") for _ in range(3)] == [1001, 1002, 1003]
    assert bus.next_seq("stage:b") == 1001


def test_since_returns_what_was_missed_in_order() -> None:
    bus, got = make(history=3)
    for i in range(5):
        seq = bus.next_seq("t")
        bus.publish("t", b"m%d" % i, seq)
    assert [p for _, p in got] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert bus.since("t", 1003) == [b"m3", b"m4"]
    assert bus.since("t", 1002) == [b"m2", b"m3", b"m4"]
    assert bus.since("t", 1005) == []
    # History holds 3: asking from before it is a reset, not a silent gap.
    assert bus.since("t", 1001) is None
    # A seq from the future (another process's numbering) is a reset too.
    assert bus.since("t", 99_999) is None


def test_unsequenced_messages_are_delivered_but_not_kept() -> None:
    bus, got = make()
    bus.publish("t", b"count")
    assert got == [("t", b"count")]
    assert bus.since("t", 1000) == []
