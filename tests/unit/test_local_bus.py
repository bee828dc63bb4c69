"""The in-process bus: rising sequence numbers, bounded history, since and resets."""

from __future__ import annotations

import pytest

from hybridcon.bus import local
from hybridcon.bus.local import LocalBus
from hybridcon.errors import ConfigError


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


# --- the journal: history and numbers across a restart ----------------------------------


async def journaled(path, epoch: int, history: int = 3) -> LocalBus:
    bus = LocalBus(history=history, epoch_ms=epoch, journal=path)
    await bus.start()
    return bus


def say(bus: LocalBus, topic: str, text: bytes) -> int:
    seq = bus.next_seq(topic)
    bus.publish(topic, text, seq)
    return seq


async def test_a_restart_answers_since_from_the_journal_and_numbers_keep_rising(tmp_path):
    path = tmp_path / "journal"
    first = await journaled(path, epoch=1000)
    seqs = [say(first, "t", b"m%d" % i) for i in range(5)]
    await first.stop()

    again = await journaled(path, epoch=2000)
    assert again.last_seq("t") == 2000
    # The client saw up to m2: it gets m3 and m4, and nothing is a reset.
    assert again.since("t", seqs[2]) == [b"m3", b"m4"]
    assert again.since("t", seqs[4]) == []
    assert again.since("t", seqs[0]) is None  # older than the history kept (3)
    new = say(again, "t", b"after")
    assert new == 2001
    assert again.since("t", seqs[4]) == [b"after"]
    assert again.since("t", seqs[3]) == [b"m4", b"after"]
    await again.stop()


async def test_numbers_stay_above_the_journal_when_the_clock_base_is_lower(tmp_path):
    # More than 1000 pushes a second on a topic: the old numbers passed the new base.
    path = tmp_path / "journal"
    first = await journaled(path, epoch=1000)
    last = [say(first, "t", b"m%d" % i) for i in range(50)][-1]
    await first.stop()
    again = await journaled(path, epoch=1010)
    assert again.last_seq("t") == last
    assert say(again, "t", b"new") == last + 1
    assert again.since("t", last) == [b"new"]
    await again.stop()


async def test_after_a_reboot_the_history_is_not_trusted_but_numbers_still_rise(
    tmp_path, monkeypatch
):
    boot = tmp_path / "boot_id"
    boot.write_text("one\n")
    monkeypatch.setattr(local, "BOOT_ID", boot)
    path = tmp_path / "journal"
    first = await journaled(path, epoch=1000)
    seqs = [say(first, "t", b"m%d" % i) for i in range(3)]
    await first.stop()
    boot.write_text("two\n")  # the page cache (and the journal's tail) may be gone
    again = await journaled(path, epoch=1001)
    assert again.since("t", seqs[1]) is None
    await again.stop()
    # Restarted again before anything new was said: the numbers are still remembered.
    third = await journaled(path, epoch=1001)
    assert say(third, "t", b"new") > seqs[-1]
    await third.stop()


async def test_a_torn_last_line_is_ignored_and_a_damaged_one_resets_what_came_before(tmp_path):
    path = tmp_path / "journal"
    first = await journaled(path, epoch=1000, history=10)
    seqs = [say(first, "t", b"m%d" % i) for i in range(3)]
    await first.stop()
    path.write_bytes(path.read_bytes() + b"1004 t m3-torn")  # no newline: never finished
    again = await journaled(path, epoch=1000, history=10)
    assert again.since("t", seqs[0]) == [b"m1", b"m2"]
    say(again, "t", b"m3")
    await again.stop()
    text = path.read_bytes().replace(b"1002 t m1\n", b"garbage\n")
    path.write_bytes(text)
    third = await journaled(path, epoch=1000, history=10)
    assert third.since("t", seqs[0]) is None  # m1 cannot be given back
    assert third.since("t", seqs[1]) == [b"m2", b"m3"]
    await third.stop()


async def test_one_node_per_journal(tmp_path):
    path = tmp_path / "journal"
    first = await journaled(path, epoch=1000)
    with pytest.raises(ConfigError, match="another node"):
        await journaled(path, epoch=1000)
    await first.stop()


async def test_the_journal_is_compacted_to_the_kept_history(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "COMPACT_AFTER", 20)
    path = tmp_path / "journal"
    bus = await journaled(path, epoch=1000, history=3)
    seqs = [say(bus, "t", b"m%d" % i) for i in range(100)]
    assert len(path.read_bytes().splitlines()) <= 1 + 3 + 20
    await bus.stop()
    again = await journaled(path, epoch=1000, history=3)
    assert again.since("t", seqs[-3]) == [b"m98", b"m99"]
    await again.stop()
