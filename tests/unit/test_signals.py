"""Signals between nodes on the local bus: a node ignores its own, and work a handler
leaves is done in arrival order, one at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from hybridcon.bus.local import LocalBus
from hybridcon.realtime.connection import Flusher
from hybridcon.realtime.hub import Hub
from hybridcon.realtime.signals import SIGNALS, Signals
from support import eventually


def _node() -> tuple[LocalBus, Signals]:
    bus = LocalBus()
    hub = Hub(bus=bus, flusher=Flusher(0.01, 0.12, 1.0))
    signals = Signals(bus)
    hub.on_internal(SIGNALS, signals.received)
    return bus, signals


async def test_a_node_ignores_its_own_signals_and_handles_anothers_in_order() -> None:
    bus, signals = _node()
    done: list[str] = []
    at_once: list[str] = []

    async def later(name: str, pause: float) -> None:
        await asyncio.sleep(pause)  # a slow first read must not be overtaken
        done.append(name)

    def handler(data: dict[str, Any]) -> Any:
        at_once.append(data["n"])
        return later(data["n"], 0.05 if data["n"] == "first" else 0)

    signals.on("thing", handler)
    await signals.start()
    signals.send("thing", {"n": "mine"})  # comes back through the local bus: ignored
    for name in ("first", "second"):
        other = orjson.dumps({"node": "elsewhere", "kind": "thing", "data": {"n": name}})
        bus.publish(SIGNALS, other)
    assert at_once == ["first", "second"]  # the immediate part runs on arrival
    await eventually(lambda: len(done) == 2, what="both handled")
    assert done == ["first", "second"]
    await signals.stop()


async def test_a_signal_of_an_unknown_kind_or_unreadable_is_dropped() -> None:
    bus, signals = _node()
    await signals.start()
    bus.publish(SIGNALS, b"not json")
    bus.publish(SIGNALS, orjson.dumps({"node": "x", "kind": "nobody", "data": {}}))
    await signals.stop()
