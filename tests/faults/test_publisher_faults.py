"""A WHIP publisher that vanishes without DELETE (its process killed): the stage goes
``interrupted`` for everyone, the change is logged once, and the stage takes a new
publisher at once (the vanished one holds nothing)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import tally
from harness import Node, Peer, connect_all

from hybridcon.core.tokens import Role
from media_fixtures import make_media
from support import eventually

pytestmark = pytest.mark.slow

STAGE = "impact"
TOPIC = f"stage:{STAGE}"
MEDIA_FIXTURES = Path(__file__).resolve().parents[1] / "media_fixtures.py"


class PublisherProcess:
    """An aiortc publisher in a process of its own (tests/media_fixtures.py's client), so
    that it can vanish as a crashed encoder or a laptop losing power does: SIGKILL."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(MEDIA_FIXTURES)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def _say(self, message: dict[str, object]) -> dict[str, object]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def publish(self, port: int, token: str, media: Path) -> int:
        offer = self._say({"cmd": "publish", "path": str(media)})["offer"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/whip/{STAGE}",
            data=str(offer).encode(),
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as resp:
                status, answer = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"answer": answer}) + "\n")
        self.proc.stdin.flush()
        return int(status)

    def vanish(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


async def test_a_whip_publisher_vanishing_without_delete(node, tmp_path):
    n: Node = node(
        HYBRIDCON_STREAM_STALL_SECONDS="1.5",
        HYBRIDCON_WHIP_FIRST_MEDIA_SECONDS="3",
        HYBRIDCON_HLS_SEGMENT_SECONDS="1",
    )
    media = await asyncio.to_thread(make_media, tmp_path, seconds=30.0, gop_seconds=1.0)
    await n.start()
    watchers = [Peer(t, f"w{i}") for i, t in enumerate(n.tokens(Role.VIEWER, 4))]
    await connect_all(watchers, n.url, TOPIC)
    (broadcaster,) = n.tokens(Role.BROADCASTER, 1, scopes=(TOPIC,))
    publishers = [PublisherProcess(), PublisherProcess()]
    try:
        first, second = publishers

        def states(w: Peer) -> list[str]:
            return [p["state"] for p in w.pushes if p["type"] == "stream.state"]

        def changes(w: Peer) -> list[str]:
            # What a viewer saw change: every stream.state push but the documented repeat
            # of `live` that only adds the hls_url (any other repeat would fail the count).
            out: list[str] = []
            before: dict[str, object] = {}
            for push in (p for p in w.pushes if p["type"] == "stream.state"):
                repeat = push["state"] == before.get("state") == "live"
                if not (repeat and push.get("hls_url") and not before.get("hls_url")):
                    out.append(push["state"])
                before = push
            return [f"{i}:{s}" for i, s in enumerate(out)]

        assert await asyncio.to_thread(first.publish, n.port, broadcaster, media.path) == 201
        await eventually(
            lambda: all("live" in states(w) for w in watchers), timeout=20, what="live"
        )
        await asyncio.to_thread(first.vanish)
        await eventually(
            lambda: all("interrupted" in states(w) for w in watchers),
            timeout=20,
            what="interrupted after the publisher vanished",
        )
        # The vanished publisher holds no slot: the stage takes a new one straight away.
        assert await asyncio.to_thread(second.publish, n.port, broadcaster, media.path) == 201
        await eventually(
            lambda: all("2:live" in changes(w) for w in watchers),
            timeout=20,
            what="live again with the new publisher",
        )
    finally:
        for publisher in publishers:
            if publisher.proc.poll() is None:
                publisher.vanish()

    sent = ["0:live", "1:interrupted", "2:live"]
    query = (
        "SELECT kind, data->>'state' AS state FROM engagement_events "
        "WHERE topic = $1 AND kind IN ('stream_started', 'stream_ended') ORDER BY id"
    )

    async def logged() -> bool:
        return len(await n.fetch(query, TOPIC)) >= len(sent)

    await eventually(logged, timeout=10, what="the stream changes in the engagement log")
    rows = await n.fetch(query, TOPIC)
    stored = [f"{i}:{r['state']}" for i, r in enumerate(rows)]
    row = tally.count(
        "WHIP publisher SIGKILLed (no DELETE)",
        "stream changes",
        sent=sent,
        stored=stored,
        received={w.name: changes(w) for w in watchers},
        note="live → interrupted → live with a new publisher, on 4 viewers",
    )
    assert row.lost == 0 and row.doubled == 0, (row, stored, [changes(w) for w in watchers])
