"""The rooms benchmark: an online workshop's media on the builtin provider and on Janus.

``python -m tests.bench.rooms`` runs, per provider in one invocation, issue 12's workshop:
6 cameras at 640×360 (30 fps, H.264 constrained baseline, Opus) and 40 participants
watching every camera, all through hybridcon as the workshop page does it (a host opens
the session over the WebSocket and gives the cameras the floor; the media goes through the
session media routes). Per provider it reports:

* **server CPU per forwarded stream**: % of a core of hybridcon's process (and, on Janus,
  of Janus's process, and both together) over a measured window, divided by cameras ×
  watchers (one camera's audio and video to one watcher is one forwarded stream);
* **end-to-end latency p50/p95**: each camera is a live encoder that burns
  CLOCK_MONOTONIC (ms) into its frame's top rows just before libx264 encodes it; *probe*
  watchers decode every camera and read the stamp of every frame: the age at decode is
  encode + send + server + receive + decode, on one machine's clock;
* **join-to-first-frame p50/p95/max**: a probe watcher joins once the room is loaded;
  from opening its WebSocket (auth, ``session.join``, one subscription per camera in turn)
  to each camera's first decoded frame.

Processes: ``hybridcon serve`` (and Janus, in a network namespace of the run's own as the
tests start it, ``tests/janus.py``) pinned to one core; the load generator (the cameras'
agent, the watchers' agents, :mod:`tests.bench.rooms_agent`) pinned to the other, as the
fan-out benchmark keeps its generator off the server's core. Load watchers count RTP at
the DTLS transport (the server's work per watcher is the same; the client's is a fraction
of a decoder's); the probes decode. The goal lines (latency p95 ≤ 200 ms, join-to-first-
frame ≤ 1 s) print as met or missed; the exit status is 0 whatever the figures, as a
benchmark never fails on noise (it is 1 when a run could not be made).

``--smoke`` (the test suite's): 2 cameras × 3 watchers, all decoding, a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from tests.bench.agents import AgentProcess
from tests.bench.hybridcon_process import REPO, pin, start_hybridcon_process, stop
from tests.bench.media.common import Window, fmt, make_clip, percentile

SESSION = "online-1"
RPC_TIMEOUT = 180.0
AGENT = "tests.bench.rooms_agent"
GOAL_LATENCY_P95_MS = 200.0
GOAL_JOIN_MS = 1000.0
WIDTH, HEIGHT, FPS = 640, 360, 30
JANUS_RTP_RANGE = "20000-20999"  # one port per peer connection (bundled)


@dataclass(frozen=True)
class Config:
    """One invocation's parameters."""

    providers: tuple[str, ...]
    cameras: int
    watchers: int
    probes: int
    agents: int
    seconds: float
    warmup: float
    server_cpu: int | None
    client_cpu: int | None
    all_decode: bool
    bitrate: int


# --- agents ---------------------------------------------------------------------------------


# --- the host -------------------------------------------------------------------------------


class Host:
    """The workshop's host on a WebSocket of the runner's own."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self._ids = itertools.count(1)

    @classmethod
    async def connect(cls, base: str, token: str) -> Host:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(f"{base}/ws")
        await ws.send_json({"type": "auth", "token": token})
        hello = await ws.receive_json(timeout=30)
        if hello.get("type") != "auth.ok":
            raise RuntimeError(f"host auth: {hello}")
        return cls(http, ws)

    async def ok(self, kind: str, **fields: Any) -> dict[str, Any]:
        ident = next(self._ids)
        await self.ws.send_json({"id": ident, "type": kind, **fields})
        while True:
            reply = await self.ws.receive_json(timeout=60)
            if reply.get("id") == ident:
                if reply.get("type") != "result":
                    raise RuntimeError(f"{kind}: {reply}")
                data: dict[str, Any] = reply["data"]
                return data

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


def _sub(token: str) -> str:
    """A token's subject (its payload read, not verified: the runner minted it)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"])


# --- one provider -----------------------------------------------------------------------------


@contextlib.contextmanager
def _janus(work: Path, cpu: int | None) -> Iterator[tuple[dict[str, str], list[str], int]]:
    """A Janus in a namespace of its own, pinned to ``cpu``: hybridcon's settings for it,
    where the peers gather (the pair's host end), Janus's pid."""
    from tests.bench.servers import _pin_threads

    sys.path.insert(0, str(REPO / "tests"))  # tests/janus.py imports its neighbours plainly
    from janus import app_settings, running_janus, skip_reason

    reason = skip_reason()
    if reason is not None:
        raise RuntimeError(f"no Janus here: {reason}")
    with running_janus(JANUS_RTP_RANGE) as server:
        assert server.process is not None
        _pin_threads(server.process.pid, cpu)
        settings = app_settings(server, work / "janus-keys")
        env = {f"HYBRIDCON_{k.upper()}": str(v) for k, v in settings.items()}
        yield env, [server.ns.host_address, str(server.ns.network)], server.process.pid


async def run_provider(provider: str, config: Config, work: Path, clip: Any) -> dict[str, Any]:
    """One provider's run; its figures."""
    from hybridcon.core.tokens import Role

    stack = contextlib.ExitStack()
    janus_pid: int | None = None
    if provider == "janus":
        env, (address, network), janus_pid = stack.enter_context(_janus(work, config.server_cpu))
        addresses, allow = [address], [network]
    else:
        env, addresses, allow = {}, ["lo"], []
    agents: list[AgentProcess] = []
    host: Host | None = None
    with stack:
        server = await asyncio.to_thread(
            start_hybridcon_process,
            work,
            env={
                **env,
                "HYBRIDCON_ROOMS_PROVIDER": provider,
                "HYBRIDCON_ROOM_MAX_PEERS": "2000",
                # The host holds the floor by role too: it counts against the cap.
                "HYBRIDCON_ROOM_MAX_PUBLISHERS": str(config.cameras + 1),
                "HYBRIDCON_ROOM_MAX_PARTICIPANTS": str(config.cameras + config.watchers + 2),
                "HYBRIDCON_ICE_SERVERS": "[]",
            },
            cpu=config.server_cpu,
        )
        base = f"http://127.0.0.1:{server.port}"
        try:
            (host_token,) = server.issue(Role.MODERATOR, "Host", 1)
            camera_tokens = server.issue(Role.VIEWER, "Camera", config.cameras)
            watcher_tokens = server.issue(Role.VIEWER, "Watcher", config.watchers)
            host = await Host.connect(base, host_token)
            await host.ok("session.join", session=SESSION)
            await host.ok("session.open", session=SESSION, auto_admit=True)

            cameras_agent = await AgentProcess.start(
                f"{provider}-cameras",
                work,
                AGENT,
                *allow,
                cpu=config.client_cpu,
                timeout=RPC_TIMEOUT,
            )
            agents.append(cameras_agent)
            common = {"base": base, "session": SESSION, "addresses": addresses}
            subs = (await cameras_agent.call("join", tokens=camera_tokens, **common))["subs"]
            for sub in subs:
                await host.ok("session.floor", session=SESSION, user_id=sub, grant=True)
            clip_params = {
                "path": str(clip.path),
                "width": clip.width,
                "height": clip.height,
                "fps": clip.fps,
                "gop": clip.gop_frames,
            }
            await cameras_agent.call(
                "publish", subs=subs, clip=clip_params, bitrate=config.bitrate, **common
            )
            await _until_feeds(host, base, host_token, len(subs))

            # The load: watchers across the agents (counting, or all decoding in a smoke
            # run), then the probes, which join a loaded room.
            probes = watcher_tokens[: config.probes]
            load = watcher_tokens[config.probes :]
            for n in range(config.agents):
                agents.append(
                    await AgentProcess.start(
                        f"{provider}-watchers{n}",
                        work,
                        AGENT,
                        *allow,
                        cpu=config.client_cpu,
                        timeout=RPC_TIMEOUT,
                    )
                )
            watcher_agents, probe_agent = agents[1:], agents[-1]
            mode = "decode" if config.all_decode else "count"
            started = time.monotonic()
            await asyncio.gather(
                *(
                    agent.call(
                        "watch",
                        timeout=RPC_TIMEOUT + 10 * len(load),
                        tokens=load[n :: len(watcher_agents)],
                        cameras=subs,
                        mode=mode,
                        **common,
                    )
                    for n, agent in enumerate(watcher_agents)
                    if load[n :: len(watcher_agents)]
                )
            )
            await probe_agent.call(
                "watch", tokens=probes, cameras=subs, mode="decode", concurrency=1, **common
            )
            setup_s = time.monotonic() - started
            await asyncio.sleep(config.warmup)  # a benchmark's settling time, not a condition

            pids = {"hybridcon": server.proc.pid}
            if janus_pid is not None:
                pids["janus"] = janus_pid
            for agent in agents:
                pids[agent.name] = agent.pid
            cores = [c for c in (config.server_cpu, config.client_cpu) if c is not None]
            window = Window(pids, cores)
            reports = await asyncio.gather(
                *(agent.call("measure", seconds=config.seconds) for agent in watcher_agents)
            )
            figures = window.close()
            ice = [await agent.call("ice") for agent in agents]
            return summarise(
                provider, config, subs, probes, reports, figures, ice, setup_s, server.proc.poll()
            )
        finally:
            for agent in agents:
                with contextlib.suppress(Exception):
                    await agent.stop()
            if host is not None:
                with contextlib.suppress(Exception):
                    await host.close()
            await asyncio.to_thread(stop, server.proc)


async def _until_feeds(host: Host, base: str, token: str, count: int, timeout: float = 30) -> None:
    """Wait until the room lists ``count`` publishing cameras."""
    deadline = time.monotonic() + timeout
    while True:
        async with host.http.get(
            f"{base}/api/v1/sessions/{SESSION}/feeds", headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            feeds = (await resp.json())["feeds"]
        if len(feeds) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(feeds)} of {count} cameras publishing after {timeout} s")
        await asyncio.sleep(0.1)


def summarise(
    provider: str,
    config: Config,
    cameras: list[str],
    probes: list[str],
    reports: list[dict[str, Any]],
    figures: dict[str, Any],
    ice: list[dict[str, Any]],
    setup_s: float,
    server_exit: int | None,
) -> dict[str, Any]:
    """The run's figures from the agents' reports and the CPU window."""
    probe_subs = {_sub(t) for t in probes}
    watchers: dict[str, Any] = {}
    for report in reports:
        watchers.update(report["watchers"])
    samples: list[float] = []
    joins: list[float] = []
    unreadable = 0
    decoded: dict[str, dict[str, int]] = {}
    rtp: dict[str, dict[str, int]] = {}
    for sub, seen in watchers.items():
        decoded[sub] = {camera: s["frames"] for camera, s in seen["seen"].items()}
        rtp[sub] = seen["rtp"]
        for s in seen["seen"].values():
            samples += s["samples"]
            unreadable += s["unreadable"]
            if (sub in probe_subs or config.all_decode) and s["first_frame_ms"] is not None:
                joins.append(s["first_frame_ms"])
    streams = len(cameras) * config.watchers
    cpu = figures["cpu"]
    server_cpu = cpu.get("hybridcon", 0.0) + cpu.get("janus", 0.0)
    p95 = percentile(samples, 95)
    join_p95 = percentile(joins, 95)
    return {
        "provider": provider,
        "cameras": cameras,
        "watchers": config.watchers,
        "forwarded_streams": streams,
        "window_s": figures["seconds"],
        "setup_s": setup_s,
        "cpu_pct": cpu,
        "cores_busy_pct": figures["cores"],
        "hybridcon_pct_per_stream": cpu.get("hybridcon", 0.0) / streams,
        "janus_pct_per_stream": cpu["janus"] / streams if "janus" in cpu else None,
        "server_pct_per_stream": server_cpu / streams,
        "latency_p50_ms": percentile(samples, 50),
        "latency_p95_ms": p95,
        "latency_samples": len(samples),
        "unreadable_stamps": unreadable,
        "join_p50_ms": percentile(joins, 50),
        "join_p95_ms": join_p95,
        "join_max_ms": max(joins) if joins else None,
        "joins": len(joins),
        "decoded": decoded,
        "rtp": rtp,
        "latency_goal_met": None if p95 is None else p95 <= GOAL_LATENCY_P95_MS,
        "join_goal_met": None if join_p95 is None else join_p95 <= GOAL_JOIN_MS,
        "stray_flows": [flow for report in ice for flow in report["stray"]],
        "server_exited": server_exit,
    }


# --- the run --------------------------------------------------------------------------------


async def run(config: Config, work: Path) -> dict[str, Any]:
    """Every provider of ``config`` in turn; ``{"meta", "results": {provider: figures or
    {"error"}}}``."""
    clip = await asyncio.to_thread(
        make_clip, work / "clip", width=WIDTH, height=HEIGHT, fps=FPS, seconds=10.0
    )
    results: dict[str, Any] = {}
    for provider in config.providers:
        try:
            results[provider] = await run_provider(provider, config, work / provider, clip)
        except Exception as exc:
            results[provider] = {"provider": provider, "error": f"{type(exc).__name__}: {exc}"}
    return {"meta": meta(config), "results": results}


def meta(config: Config) -> dict[str, Any]:
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
    }


def _goal(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "MISSED")


def report(results: dict[str, Any]) -> str:
    """The run as text: one block per provider, the goals as met or missed."""
    config = results["meta"]["config"]
    lines = [
        f"rooms benchmark: {config['cameras']} cameras at {WIDTH}x{HEIGHT}, "
        f"{config['watchers']} watchers ({config['probes']} decoding probes"
        f"{'; all decoding' if config['all_decode'] else ''}), "
        f"{config['seconds']:g} s measured; server core {config['server_cpu']}, "
        f"generator core {config['client_cpu']}",
    ]
    for provider, r in results["results"].items():
        lines.append("")
        if "error" in r:
            lines.append(f"[{provider}] not measured: {r['error']}")
            continue
        cpu = r["cpu_pct"]
        generator = sum(v for k, v in cpu.items() if k not in ("hybridcon", "janus"))
        lines += [
            f"[{provider}] {r['forwarded_streams']} forwarded streams, set up in "
            f"{r['setup_s']:.1f} s",
            f"  server CPU: hybridcon {cpu['hybridcon']:.1f} %"
            + (f", janus {cpu['janus']:.1f} %" if "janus" in cpu else "")
            + f" of a core; per forwarded stream {r['server_pct_per_stream']:.3f} %"
            + (
                f" (hybridcon {r['hybridcon_pct_per_stream']:.3f}, "
                f"janus {r['janus_pct_per_stream']:.3f})"
                if r["janus_pct_per_stream"] is not None
                else ""
            ),
            f"  generator CPU: {generator:.1f} % (cores busy: "
            + ", ".join(f"{c}: {v:.0f} %" for c, v in r["cores_busy_pct"].items())
            + ")",
            f"  latency p50 {fmt(r['latency_p50_ms'])} ms, p95 {fmt(r['latency_p95_ms'])} ms "
            f"({r['latency_samples']} frames, {r['unreadable_stamps']} unreadable): goal "
            f"p95 <= {GOAL_LATENCY_P95_MS:.0f} ms {_goal(r['latency_goal_met'])}",
            f"  join-to-first-frame p50 {fmt(r['join_p50_ms'], '.0f')} ms, p95 "
            f"{fmt(r['join_p95_ms'], '.0f')} ms, max {fmt(r['join_max_ms'], '.0f')} ms "
            f"({r['joins']} joins x cameras): goal <= {GOAL_JOIN_MS:.0f} ms "
            f"{_goal(r['join_goal_met'])}",
        ]
        if r["stray_flows"]:
            lines.append(f"  INVALID: media outside the allowed networks: {r['stray_flows']}")
        if r["server_exited"] is not None:
            lines.append(f"  INVALID: hybridcon exited with {r['server_exited']}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.rooms", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--providers", default="builtin,janus", help="comma-separated")
    parser.add_argument("--cameras", type=int, default=6)
    parser.add_argument("--watchers", type=int, default=40, help="probes included")
    parser.add_argument("--probes", type=int, default=2, help="decoding watchers")
    parser.add_argument("--agents", type=int, default=3, help="watcher agent processes")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--bitrate", type=int, default=800_000, help="camera video bits/s")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="2 cameras x 3 decoding watchers")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    if args.smoke:
        args.cameras, args.watchers, args.probes, args.agents = 2, 3, 1, 1
        args.seconds, args.warmup = 2.0, 0.5
    config = Config(
        providers=tuple(p for p in args.providers.split(",") if p),
        cameras=args.cameras,
        watchers=args.watchers,
        probes=min(args.probes, args.watchers),
        agents=max(1, args.agents),
        seconds=args.seconds,
        warmup=args.warmup,
        server_cpu=args.server_cpu if args.server_cpu >= 0 else None,
        client_cpu=args.client_cpu if args.client_cpu >= 0 else None,
        all_decode=args.smoke,
        bitrate=args.bitrate,
    )
    return config, args


def main(argv: Sequence[str] | None = None) -> int:
    config, args = parse_args(argv)
    pin(os.getpid(), config.client_cpu)
    with tempfile.TemporaryDirectory(prefix="hybridcon-bench-rooms-") as tmp:
        results = asyncio.run(run(config, Path(tmp)))
    print(report(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any("error" in r for r in results["results"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
