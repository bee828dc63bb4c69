"""Media benchmarks: CPU per WHEP viewer and per HLS stage, latency, first frame, memory.

Server CPU per WHEP viewer and per HLS-packaged stage, encode-to-decode latency over
WHEP, time to first frame for a late viewer, and the server's memory over time.

The server is the real ``hybridcon serve`` (fresh data directory, embedded PostgreSQL),
pinned to one core. The clients run in two agent processes
(:mod:`tests.bench.media.agent`) pinned to the other core: ``load`` (publishers of a
looped pre-encoded 720p30 clip, and load viewers; niced) and ``probe`` (a live encoder
that burns the time into its frames, and viewers that decode them). Isolated pieces (the
HLS packager and recorder; what transcoding would cost) run in a process of their own
on the server's core before the server starts (:mod:`tests.bench.media.isolated`).

Every figure is reported next to a baseline from the same invocation: the ingest-only
server (0 viewers) for the fan-out, the idle server for stages, hubs whose packets are
discarded for the packager, the lone viewer for latency, and aiortc's own encoder for
what a transcoding viewer would cost. The goal lines are for reading: the exit status
is 0 whatever the figures (a benchmark never fails on noise).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from tests.bench.agents import AgentProcess
from tests.bench.media.common import (
    GOAL_CPU_PER_STAGE,
    GOAL_CPU_PER_VIEWER,
    GOAL_LATENCY_P95_MS,
    GOAL_SIX_STAGES,
    GOAL_TTFF_MS,
    Clip,
    Window,
    cpu_seconds,
    fmt,
    linear_fit,
    make_clip,
    percentile,
    rss_bytes,
)
from tests.bench.media.server import REPO, SIX_STAGES, MediaServer, start_server

BENCHMARKS = ("transcode", "packager", "fanout", "hls", "latency", "ttff", "soak")
RPC_TIMEOUT = 120.0
AGENT = "tests.bench.media.agent"
FANOUT_STAGE = "plenary"
LATENCY_STAGE = "plenary"
VALID_DELIVERY = 0.95
SOAK_SLOPE_KIB_MIN = 64  # below 1 MiB per 16 minutes: no growth worth the name
SOAK_MIN_SECONDS = 300.0  # shorter soaks report figures but no verdict


@dataclass
class Config:
    """What to run and for how long."""

    only: tuple[str, ...]
    window: float
    settle: float
    viewers: tuple[int, ...]
    stages: tuple[int, ...]
    packager_window: float
    load_viewers: int
    latency_seconds: float
    joins: int
    soak: float
    soak_interval: float
    viewer_mode: str
    server_cpu: int | None
    client_cpu: int | None
    quick: bool
    server_log_level: str = "warning"


def parse_args(argv: Sequence[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.media", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated sub-benchmarks (default all: {','.join(BENCHMARKS)})",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~5 min)")
    parser.add_argument("--window", type=float, help="seconds measured per step (20; quick 6)")
    parser.add_argument("--settle", type=float, help="seconds before each window (5; quick 3)")
    parser.add_argument("--viewers", help="WHEP viewer steps (0,10,25,50; quick 0,5,10)")
    parser.add_argument("--stages", help="live stage steps for HLS (1,6)")
    parser.add_argument(
        "--load-viewers",
        type=int,
        help="viewers attached for the loaded latency run (25; quick 10)",
    )
    parser.add_argument(
        "--latency-seconds", type=float, help="seconds of latency samples per run (30; quick 8)"
    )
    parser.add_argument(
        "--joins", type=int, help="late viewers for time to first frame (10; quick 4)"
    )
    parser.add_argument("--soak", type=float, help="seconds of the memory soak (600; quick 60)")
    parser.add_argument(
        "--viewer-mode",
        choices=["count", "passthrough"],
        default="count",
        help="load viewers stop RTP at the DTLS transport (count) or run aiortc's "
        "receive path up to frames (passthrough)",
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="core for the server (0)")
    parser.add_argument("--client-cpu", type=int, default=1, help="core for the clients (1)")
    parser.add_argument(
        "--server-log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="the server's log level (its log is in the work directory; see --keep)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    quick = args.quick
    only = tuple(x.strip() for x in args.only.split(",") if x.strip())
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown sub-benchmarks: {', '.join(sorted(unknown))}")
    cores = os.cpu_count() or 1

    def ints(text: str | None, default: str) -> tuple[int, ...]:
        return tuple(sorted({int(x) for x in (text or default).split(",")}))

    config = Config(
        only=only,
        window=args.window or (6.0 if quick else 20.0),
        settle=args.settle or (3.0 if quick else 5.0),
        viewers=ints(args.viewers, "0,5,10" if quick else "0,10,25,50"),
        stages=ints(args.stages, "1,6"),
        packager_window=args.window or (5.0 if quick else 20.0),
        load_viewers=args.load_viewers if args.load_viewers is not None else (10 if quick else 25),
        latency_seconds=args.latency_seconds or (8.0 if quick else 30.0),
        joins=args.joins or (4 if quick else 10),
        soak=args.soak or (60.0 if quick else 600.0),
        soak_interval=5.0 if quick else 10.0,
        viewer_mode=args.viewer_mode,
        server_cpu=args.server_cpu if cores >= 2 else None,
        client_cpu=args.client_cpu if cores >= 2 else None,
        quick=quick,
        server_log_level=args.server_log_level,
    )
    return config, args


# --- agents ---------------------------------------------------------------------------------


@dataclass
class Rig:
    """The server and the two agents."""

    server: MediaServer
    load: AgentProcess
    probe: AgentProcess
    clip: Clip
    config: Config

    @property
    def clip_params(self) -> dict[str, Any]:
        c = self.clip
        return {
            "path": str(c.path),
            "width": c.width,
            "height": c.height,
            "fps": c.fps,
            "gop": c.gop_frames,
        }

    def window(self) -> Window:
        cores = [c for c in (self.config.server_cpu, self.config.client_cpu) if c is not None]
        return Window(
            {"server": self.server.pid, "load": self.load.pid, "probe": self.probe.pid}, cores
        )

    async def publish(self, agent: AgentProcess, stage: str, source: str = "clip") -> None:
        """Publish to ``stage`` and return once it is live (its first media arrived:
        until then WHEP answers 409)."""
        await agent.call(
            "publish",
            base=self.server.base,
            stage=stage,
            token=self.server.broadcaster_token,
            source=source,
            clip=self.clip_params,
        )
        await self.until_live(stage)

    async def until_live(self, stage: str, timeout: float = 15.0) -> None:
        """Wait until the server's /metrics says ``stage`` is live."""
        line = f'hybridcon_stream_state{{stage="{stage}",state="live"}} 1.0'
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                async with http.get(f"{self.server.base}/metrics") as resp:
                    if line in (await resp.text()).splitlines():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stage {stage} did not go live within {timeout} s")
                await asyncio.sleep(0.1)

    async def view(self, stage: str, count: int) -> None:
        if count > 0:
            await self.load.call(
                "view",
                timeout=RPC_TIMEOUT + 5 * count,
                base=self.server.base,
                stage=stage,
                token=self.server.viewer_token,
                count=count,
                mode=self.config.viewer_mode,
            )

    def check(self) -> None:
        if not self.server.alive():
            raise RuntimeError(f"the server died:\n{self.server.log_tail()}")


async def start_rig(work: Path, clip: Clip, config: Config, name: str) -> Rig:
    server = await asyncio.to_thread(
        start_server, work / name, cpu=config.server_cpu, log_level=config.server_log_level
    )
    try:
        load = await AgentProcess.start(
            f"{name}-load", work, AGENT, cpu=config.client_cpu, nice=10, timeout=RPC_TIMEOUT
        )
        probe = await AgentProcess.start(
            f"{name}-probe", work, AGENT, cpu=config.client_cpu, timeout=RPC_TIMEOUT
        )
    except BaseException:
        server.stop()
        raise
    return Rig(server, load, probe, clip, config)


async def stop_rig(rig: Rig) -> None:
    for agent in (rig.load, rig.probe):
        with contextlib.suppress(Exception):
            await agent.stop()
    await asyncio.to_thread(rig.server.stop)


async def ice_report(rig: Rig) -> dict[str, Any]:
    """Where the agents' WebRTC flows went, from their ICE guards: ``stray`` lists every
    flow outside loopback (it must be empty). The server's end of each flow is an
    agent's other end, so this covers the server's media too."""
    return {agent.name: await agent.call("ice") for agent in (rig.load, rig.probe)}


def stray_media(results: dict[str, Any]) -> list[str]:
    """Every flow any agent sent outside loopback, named by agent."""
    return [
        f"{agent}: {line}"
        for agent, found in results.get("ice", {}).items()
        for line in found.get("stray", [])
    ]


# --- isolated pieces --------------------------------------------------------------------------


async def run_isolated(what: str, clip: Clip, config: Config, *extra: str) -> dict[str, Any]:
    def prepare() -> None:
        if config.server_cpu is not None:
            os.sched_setaffinity(0, {config.server_cpu})

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bench.media.isolated",
        what,
        "--clip",
        str(clip.path),
        "--width",
        str(clip.width),
        "--height",
        str(clip.height),
        "--fps",
        str(clip.fps),
        "--gop",
        str(clip.gop_frames),
        *extra,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        preexec_fn=prepare,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 900)
    if proc.returncode != 0:
        raise RuntimeError(f"isolated {what} exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def bench_transcode(clip: Clip, config: Config) -> dict[str, Any]:
    return await run_isolated("transcode", clip, config)


async def bench_packager(clip: Clip, config: Config) -> dict[str, Any]:
    result = await run_isolated(
        "packager",
        clip,
        config,
        "--stages",
        ",".join(str(s) for s in config.stages),
        "--window",
        str(config.packager_window),
        "--settle",
        str(config.settle),
    )
    for row in result["rows"]:
        k = row["stages"]
        row["hls_per_stage"] = (row["hls"] - row["discard"]) / k
        row["hls_recorder_per_stage"] = (row["hls_recorder"] - row["discard"]) / k
    return result


# --- on the service -------------------------------------------------------------------------


def _rates(before: dict[str, Any], after: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Per viewer bytes/s relative to the publisher's, from two ``counts`` answers."""
    sent = [
        (after["publishers"][s][1] - before["publishers"][s][1]) / seconds
        for s in after["publishers"]
        if s in before["publishers"]
    ]
    per_publisher = sum(sent) / len(sent) if sent else 0.0
    received = [
        (a[1] - b[1]) / seconds for a, b in zip(after["viewers"], before["viewers"], strict=False)
    ]
    ratios = [r / per_publisher for r in received] if per_publisher else []
    return {
        "publisher_kbps": per_publisher * 8 / 1000,
        "delivery_min": min(ratios) if ratios else None,
        "delivery_median": percentile(ratios, 50),
        "not_connected": sum(1 for s in after["states"] if s != "connected"),
    }


async def measured(rig: Rig, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """A window of ``seconds``: CPU of every process and core, and delivery."""
    before = await rig.load.call("counts")
    window = rig.window()
    await asyncio.sleep(seconds)
    figures = window.close()
    after = await rig.load.call("counts")
    rig.check()
    return figures, _rates(before, after, figures["seconds"])


async def bench_fanout(rig: Rig, log: Callable[[str], None]) -> dict[str, Any]:
    config = rig.config
    await rig.publish(rig.load, FANOUT_STAGE)
    steps = []
    attached = 0
    try:
        await asyncio.sleep(config.settle)
        for count in config.viewers:
            await rig.view(FANOUT_STAGE, count - attached)
            attached = count
            await asyncio.sleep(config.settle)
            figures, delivery = await measured(rig, config.window)
            step = {"viewers": count, **figures, **delivery}
            steps.append(step)
            log(
                f"  fan-out {count:>3} viewers: server {figures['cpu']['server']:.1f} % "
                f"load agent {figures['cpu']['load']:.1f} % "
                f"delivery min {fmt(delivery['delivery_min'], '.2f')}"
            )
    finally:
        await rig.load.call("unview", timeout=RPC_TIMEOUT + attached)
        await rig.load.call("unpublish")
    for step in steps:
        # A step where viewers got < 95 % of the stream measured a server (or clients)
        # that fell behind and skipped packets: its CPU figure is not the full work.
        median = step["delivery_median"]
        step["valid"] = (median is None or median >= VALID_DELIVERY) and not step["not_connected"]
        step["softirq"] = _part(step, config.server_cpu, "softirq")
    valid = [s for s in steps if s["valid"]]
    base = steps[0]["cpu"]["server"] if steps and steps[0]["viewers"] == 0 else None
    for step in steps:
        n = step["viewers"]
        step["per_viewer"] = (step["cpu"]["server"] - base) / n if base is not None and n else None
    fit = linear_fit([s["viewers"] for s in valid], [s["cpu"]["server"] for s in valid])
    fit_all = linear_fit([s["viewers"] for s in steps], [s["cpu"]["server"] for s in steps])
    with_kernel = linear_fit(
        [s["viewers"] for s in valid if s["softirq"] is not None],
        [s["cpu"]["server"] + s["softirq"] for s in valid if s["softirq"] is not None],
    )
    return {
        "steps": steps,
        "ingest_only": base,
        "slope": fit[0] if fit else None,
        "intercept": fit[1] if fit else None,
        "slope_all_steps": fit_all[0] if fit_all else None,
        "slope_with_softirq": with_kernel[0] if with_kernel else None,
    }


def _part(figures: dict[str, Any], core: int | None, part: str) -> float | None:
    parts = figures.get("core_parts", {})
    value = parts.get(core, parts.get(str(core)))
    return None if value is None else value[part]


def _outputs(data_dir: Path, stages: Sequence[str]) -> dict[str, Any]:
    """What the service wrote per stage: HLS segments, and the streams in each recording."""
    import av

    found: dict[str, Any] = {}
    for stage in stages:
        segments = len(list((data_dir / "hls" / stage).glob("seg-*.ts")))
        recordings = []
        for path in sorted((data_dir / "recordings" / stage).glob("*.mkv")):
            try:
                with av.open(str(path)) as container:
                    kinds = sorted(s.type for s in container.streams)
            except Exception as exc:  # a recording that cannot be opened is a finding
                kinds = [f"unreadable: {type(exc).__name__}"]
            recordings.append({"file": path.name, "streams": kinds})
        found[stage] = {"segments": segments, "recordings": recordings}
    return found


async def bench_hls(rig: Rig, log: Callable[[str], None]) -> dict[str, Any]:
    config = rig.config
    steps = []
    live: list[str] = []
    try:
        await asyncio.sleep(config.settle)
        figures, _ = await measured(rig, config.window)
        steps.append({"stages": 0, **figures})
        log(f"  stages 0 (idle): server {figures['cpu']['server']:.1f} %")
        for count in config.stages:
            for stage in SIX_STAGES[len(live) : count]:
                await rig.publish(rig.load, stage)
                live.append(stage)
            await asyncio.sleep(config.settle + 2)  # past the first segment
            figures, delivery = await measured(rig, config.window)
            steps.append({"stages": count, **figures, **delivery})
            log(
                f"  stages {count}: server {figures['cpu']['server']:.1f} % "
                f"load agent {figures['cpu']['load']:.1f} %"
            )
    finally:
        await rig.load.call("unpublish")
    await asyncio.sleep(2)  # the outputs finish their files
    idle = steps[0]["cpu"]["server"]
    for step in steps[1:]:
        step["per_stage"] = (step["cpu"]["server"] - idle) / step["stages"]
    return {"steps": steps, "idle": idle, "outputs": _outputs(rig.server.data_dir, live)}


def _latency_summary(result: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    samples = result["samples"]
    return {
        "frames": result["decoded"],
        "unreadable": result["unreadable"],
        "p50": percentile(samples, 50),
        "p95": percentile(samples, 95),
        "p99": percentile(samples, 99),
        "max": max(samples) if samples else None,
        "fps": result["decoded"] / result["seconds"] if result["seconds"] else None,
        **figures,
    }


async def bench_latency(rig: Rig, log: Callable[[str], None], *, ttff: bool) -> dict[str, Any]:
    config = rig.config
    out: dict[str, Any] = {}
    await rig.publish(rig.probe, LATENCY_STAGE, source="live")
    try:
        await asyncio.sleep(config.settle)
        params = {
            "base": rig.server.base,
            "stage": LATENCY_STAGE,
            "token": rig.server.viewer_token,
        }
        timeout = config.latency_seconds + 60
        if "latency" in config.only:
            window = rig.window()
            alone = await rig.probe.call(
                "latency", timeout=timeout, seconds=config.latency_seconds, warmup=3.0, **params
            )
            out["alone"] = _latency_summary(alone, window.close())
            log(
                f"  latency alone: p50 {fmt(out['alone']['p50'])} ms p95 {fmt(out['alone']['p95'])} ms"
            )
        if ttff:
            joins = await rig.probe.call(
                "ttff", timeout=30 + 15 * config.joins, joins=config.joins, **params
            )
            out["ttff"] = _ttff_summary(joins["joins"])
            log(f"  first frame: p50 {fmt(out['ttff']['first_frame_p50'])} ms")
        if "latency" in config.only and config.load_viewers:
            await rig.view(LATENCY_STAGE, config.load_viewers)
            try:
                await asyncio.sleep(config.settle)
                # The load viewers' delivery, against the probe's (live) publisher.
                before = await rig.load.call("counts")
                before["publishers"] = (await rig.probe.call("counts"))["publishers"]
                window = rig.window()
                loaded = await rig.probe.call(
                    "latency", timeout=timeout, seconds=config.latency_seconds, warmup=3.0, **params
                )
                figures = window.close()
                after = await rig.load.call("counts")
                after["publishers"] = (await rig.probe.call("counts"))["publishers"]
                out["loaded"] = {
                    "viewers": config.load_viewers,
                    **_latency_summary(loaded, figures),
                    **_rates(before, after, figures["seconds"]),
                }
                log(
                    f"  latency with {config.load_viewers} viewers: p50 "
                    f"{fmt(out['loaded']['p50'])} ms p95 {fmt(out['loaded']['p95'])} ms"
                )
            finally:
                await rig.load.call("unview", timeout=RPC_TIMEOUT + config.load_viewers)
        counts = await rig.probe.call("counts")
        out["keyframe_requests"] = counts["keyframe_requests"].get(LATENCY_STAGE)
    finally:
        await rig.probe.call("unpublish")
    rig.check()
    return out


def _ttff_summary(joins: list[dict[str, Any]]) -> dict[str, Any]:
    def values(key: str) -> list[float]:
        return [j[key] for j in joins if j.get(key) is not None]

    summary: dict[str, Any] = {
        "joins": joins,
        "failed": sum(1 for j in joins if j.get("first_frame_ms") is None),
        "joins_with_drops": sum(1 for j in joins if j.get("udp_rcvbuf_errors")),
        "rcvbuf_drops": sum(j.get("udp_rcvbuf_errors", 0) for j in joins),
        "frames_to_live_max": max((j.get("frames_to_live", 0) for j in joins), default=None),
    }
    for key in ("answer_ms", "connected_ms", "first_frame_ms", "first_frame_age_ms", "live_ms"):
        name = key.removesuffix("_ms")
        vals = values(key)
        summary[f"{name}_p50"] = percentile(vals, 50)
        summary[f"{name}_p95"] = percentile(vals, 95)
        summary[f"{name}_max"] = max(vals) if vals else None
    return summary


async def bench_soak(rig: Rig, log: Callable[[str], None]) -> dict[str, Any]:
    config = rig.config
    pid = rig.server.pid
    await rig.publish(rig.load, FANOUT_STAGE)
    samples: list[dict[str, Any]] = []
    try:
        await rig.view(FANOUT_STAGE, 10)
        await asyncio.sleep(config.settle)
        before = await rig.load.call("counts")
        started = time.monotonic()
        cpu0 = cpu_seconds(pid)
        last = (started, cpu0)
        while True:
            now = time.monotonic()
            cpu = cpu_seconds(pid)
            samples.append(
                {
                    "t": now - started,
                    "rss": rss_bytes(pid),
                    "cpu": 100 * (cpu - last[1]) / max(now - last[0], 1e-9),
                    "threads": _proc_threads(pid),
                    "fds": len(os.listdir(f"/proc/{pid}/fd")),
                }
            )
            last = (now, cpu)
            if now - started >= config.soak:
                break
            if len(samples) % max(1, round(60 / config.soak_interval)) == 0:
                log(
                    f"  soak {now - started:.0f} s: RSS {samples[-1]['rss'] / 2**20:.1f} MiB, "
                    f"server {samples[-1]['cpu']:.1f} %"
                )
            rig.check()
            await asyncio.sleep(
                max(0.0, started + len(samples) * config.soak_interval - time.monotonic())
            )
        after = await rig.load.call("counts")
        delivery = _rates(before, after, time.monotonic() - started)
    finally:
        await rig.load.call("unview", timeout=RPC_TIMEOUT + 10)
        await rig.load.call("unpublish")
    return {"samples": samples, **delivery, **_soak_summary(samples, config.soak)}


def _proc_threads(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def _soak_summary(samples: list[dict[str, Any]], soak: float) -> dict[str, Any]:
    warmup = min(60.0, soak * 0.2)
    steady = [s for s in samples if s["t"] >= warmup]
    half = [s for s in steady if s["t"] >= (warmup + soak) / 2]

    def slope(rows: list[dict[str, Any]]) -> float | None:
        fit = linear_fit([r["t"] / 60 for r in rows], [r["rss"] / 1024 for r in rows])
        return fit[0] if fit else None

    return {
        "warmup_s": warmup,
        "rss_start": steady[0]["rss"] if steady else None,
        "rss_end": steady[-1]["rss"] if steady else None,
        "rss_max": max(s["rss"] for s in samples) if samples else None,
        "slope_kib_min": slope(steady),
        "slope_second_half_kib_min": slope(half),
        "threads": (samples[0]["threads"], samples[-1]["threads"]) if samples else None,
        "fds": (samples[0]["fds"], samples[-1]["fds"]) if samples else None,
        "cpu_mean": sum(s["cpu"] for s in samples[1:]) / max(1, len(samples) - 1),
    }


# --- the run ---------------------------------------------------------------------------------


def meta(config: Config) -> dict[str, Any]:
    def git(*args: str) -> str:
        with contextlib.suppress(Exception):
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
        return ""

    import aiortc
    import av

    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain")),
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "av": av.__version__,
        "ffmpeg": ".".join(str(x) for x in av.library_versions.get("libavcodec", ())),
        "loadavg": os.getloadavg(),
        "argv": sys.argv[1:],
        "server_cpu": config.server_cpu,
        "client_cpu": config.client_cpu,
    }


async def run(config: Config, work: Path) -> dict[str, Any]:
    def log(line: str) -> None:
        print(line, flush=True)

    results: dict[str, Any] = {"meta": meta(config)}
    clip = await asyncio.to_thread(make_clip, work / "clips")
    results["clip"] = {
        "width": clip.width,
        "height": clip.height,
        "fps": clip.fps,
        "gop_frames": clip.gop_frames,
        "seconds": clip.period,
        "video_kbps": clip.video_bitrate / 1000,
        "audio_kbps": clip.audio_bitrate / 1000,
    }
    log(
        f"clip: {clip.width}x{clip.height} {clip.fps} fps, H.264 {clip.video_bitrate / 1e6:.2f} "
        f"Mbit/s + Opus {clip.audio_bitrate / 1e3:.0f} kbit/s, GOP {clip.gop_frames} frames"
    )

    async def attempt(name: str, job: Any) -> None:
        log(f"{name} ...")
        started = time.monotonic()
        try:
            results[name] = await job
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"  {name} failed: {exc}")
        results[name]["elapsed_s"] = time.monotonic() - started

    if "transcode" in config.only:
        await attempt("transcode", bench_transcode(clip, config))
    if "packager" in config.only:
        await attempt("packager", bench_packager(clip, config))
    service = [b for b in ("fanout", "hls", "latency", "ttff") if b in config.only]
    if service:
        rig = await start_rig(work, clip, config, "service")
        try:
            if "fanout" in service:
                await attempt("fanout", bench_fanout(rig, log))
            if "hls" in service:
                await attempt("hls", bench_hls(rig, log))
            if "latency" in service or "ttff" in service:
                await attempt("latency", bench_latency(rig, log, ttff="ttff" in service))
            results.setdefault("ice", {}).update(await ice_report(rig))
        finally:
            await stop_rig(rig)
    if "soak" in config.only:
        # A fresh server: memory freed by earlier runs would hide growth in the soak.
        rig = await start_rig(work, clip, config, "soak")
        try:
            await attempt("soak", bench_soak(rig, log))
            results.setdefault("ice", {}).update(await ice_report(rig))
        finally:
            await stop_rig(rig)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    config, args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hybridcon-media-bench-"))
    try:
        results = asyncio.run(run(config, work))
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(report(results, config))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    stray = stray_media(results)
    if stray:
        print("\nFAILED: benchmark media left loopback:\n  " + "\n  ".join(stray))
        return 1
    return 0


# --- the report ------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "missed")


def _ice_line(results: dict[str, Any]) -> list[str]:
    ice = results.get("ice")
    if not ice:
        return []
    stray = stray_media(results)
    media = sum(found.get("media_flows", 0) for found in ice.values())
    if stray:
        return [f"# WebRTC: {len(stray)} flows OUTSIDE loopback (see the end)"]
    return [f"# WebRTC: every flow on loopback ({media} media flows, checked by the ICE guard)"]


def report(results: dict[str, Any], config: Config) -> str:
    m = results["meta"]
    clip = results["clip"]
    lines = [
        f"# media benchmarks, {m['date']}, commit {m['commit']}{' (dirty)' if m['dirty'] else ''}",
        f"# machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, "
        f"aiortc {m['aiortc']}, PyAV {m['av']} (libavcodec {m['ffmpeg']}); "
        f"load average at start {m['loadavg'][0]:.2f}",
        f"# server on core {m['server_cpu']}, clients on core {m['client_cpu']}; "
        f"load viewers: {config.viewer_mode}",
        *(["# --quick: short windows, verdicts are indicative only"] if config.quick else []),
        f"# clip: {clip['width']}x{clip['height']} {clip['fps']} fps H.264 constrained baseline "
        f"{clip['video_kbps'] / 1000:.2f} Mbit/s + Opus {clip['audio_kbps']:.0f} kbit/s, "
        f"GOP {clip['gop_frames'] / clip['fps']:.0f} s",
        *_ice_line(results),
        "",
    ]
    tr = results.get("transcode", {})
    fo = results.get("fanout")
    if fo is not None:
        lines += ["## WHEP fan-out: server CPU per viewer", ""]
        if "error" in fo:
            lines += [f"error: {fo['error']}", ""]
        else:
            lines += [
                "| viewers | server % of a core | per viewer above ingest | softirq on server "
                "core % | other tasks on server core % | load agent % | client core busy % | "
                "delivery min / median | UDP rcvbuf errors |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for s in fo["steps"]:
                client_core = s["cores"].get(
                    config.client_cpu, s["cores"].get(str(config.client_cpu))
                )
                tasks = _part(s, config.server_cpu, "tasks")
                # Tick-based counters: the difference can dip just under zero.
                other = None if tasks is None else max(0.0, tasks - s["cpu"]["server"])
                mark = "" if s["valid"] else " (invalid)"
                lines.append(
                    f"| {s['viewers']}{mark} | {s['cpu']['server']:.1f} | {fmt(s['per_viewer'], '.2f')} | "
                    f"{fmt(s['softirq'])} | {fmt(other)} | {s['cpu']['load']:.1f} | {fmt(client_core)} | "
                    f"{fmt(s['delivery_min'], '.2f')} / {fmt(s['delivery_median'], '.2f')} | "
                    f"{s['udp'].get('RcvbufErrors', 0)} |"
                )
            slope = fo["slope"]
            invalid = [str(s["viewers"]) for s in fo["steps"] if not s["valid"]]
            lines += [
                "",
                f"slope over valid steps: **{fmt(slope, '.2f')} % of a core per viewer** "
                f"(≈ {fmt(100 / slope if slope else None, '.0f')} viewers per core on top of ingest); "
                f"ingest only (baseline): {fmt(fo['ingest_only'])} %; with the server core's softirq "
                f"(loopback delivery, both ends): {fmt(fo['slope_with_softirq'], '.2f')} % per viewer; "
                f"goal ≤ {GOAL_CPU_PER_VIEWER} % per viewer: "
                f"**{_verdict(None if slope is None else slope <= GOAL_CPU_PER_VIEWER)}**",
            ]
            if invalid:
                lines.append(
                    f"invalid steps (viewers got < {VALID_DELIVERY:.0%} of the stream; left out of "
                    f"the slope): {', '.join(invalid)} viewers; slope over all steps "
                    f"{fmt(fo['slope_all_steps'], '.2f')}"
                )
            if tr and "error" not in tr:
                lines.append(
                    f"peer: transcoding instead (aiortc's H.264 encoder, measured now) would cost "
                    f"{tr['encode_pct']:.1f} % of a core per viewer plus {tr['decode_pct']:.1f} % "
                    f"once to decode: {fmt(tr['encode_pct'] / slope if slope else None, '.0f')}× "
                    f"the pass-through slope (findings: 46 % for one viewer)"
                )
            lines.append("")
    pk = results.get("packager")
    if pk is not None:
        lines += ["## HLS packager and recorder, isolated (no network; hubs fed in-process)", ""]
        if "error" in pk:
            lines += [f"error: {pk['error']}", ""]
        else:
            lines += [
                "| stages | hubs only % | discard consumers % (baseline) | + HLS % | "
                "+ HLS + recorder % | HLS per stage | HLS + recorder per stage |",
                "|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for r in pk["rows"]:
                lines.append(
                    f"| {r['stages']} | {r['hub_only']:.1f} | {r['discard']:.1f} | {r['hls']:.1f} | "
                    f"{r['hls_recorder']:.1f} | {r['hls_per_stage']:.2f} | "
                    f"{r['hls_recorder_per_stage']:.2f} |"
                )
            # The issue's goal is the cost of packaging a stage for HLS, the way the WHEP
            # goal is the cost of a viewer: above what the stage costs anyway (its ingest,
            # measured on the service below).
            worst = max((r["hls_per_stage"] for r in pk["rows"]), default=None)
            six_pk = next((r for r in pk["rows"] if r["stages"] == 6), None)
            six_total = None if six_pk is None else six_pk["hls_per_stage"] * 6
            lines += [
                "",
                f"HLS packaging per stage (worst step): {fmt(worst, '.2f')} %, goal ≤ "
                f"{GOAL_CPU_PER_STAGE} %: "
                f"**{_verdict(None if worst is None else worst <= GOAL_CPU_PER_STAGE)}**; "
                f"six stages' packaging together: {fmt(six_total)} %, goal < {GOAL_SIX_STAGES} %: "
                f"**{_verdict(None if six_total is None else six_total < GOAL_SIX_STAGES)}**",
            ]
            lines.append("")
    hl = results.get("hls")
    if hl is not None:
        lines += ["## Live stages on the service (ingest + hub + HLS + recorder), no viewers", ""]
        if "error" in hl:
            lines += [f"error: {hl['error']}", ""]
        else:
            lines += [
                "| live stages | server % of a core | per stage above idle | load agent % |",
                "|---:|---:|---:|---:|",
            ]
            for s in hl["steps"]:
                lines.append(
                    f"| {s['stages']} | {s['cpu']['server']:.1f} | {fmt(s.get('per_stage'), '.2f')} | "
                    f"{s['cpu']['load']:.1f} |"
                )
            six = next((s for s in hl["steps"] if s["stages"] == 6), None)
            per = [s["per_stage"] for s in hl["steps"] if "per_stage" in s]
            worst = max(per) if per else None
            lines += [
                "",
                f"a whole live stage (WebRTC ingest, hub, HLS, recorder, probe), per stage (worst "
                f"step): {fmt(worst, '.2f')} %; six stages above idle: "
                f"{fmt(six and six['per_stage'] * 6)} % (for reading: the goal is on the packaging, "
                "above)",
            ]
            bad = [
                f"{stage}/{r['file']}: {','.join(r['streams'])}"
                for stage, o in hl["outputs"].items()
                for r in o["recordings"]
                if r["streams"] != ["audio", "video"]
            ]
            segs = sum(o["segments"] for o in hl["outputs"].values())
            recs = sum(len(o["recordings"]) for o in hl["outputs"].values())
            lines.append(
                f"outputs: {segs} HLS segments, {recs} recordings"
                + (f"; recordings without both streams: {'; '.join(bad)}" if bad else "")
            )
            lines.append("")
    la = results.get("latency")
    if la is not None:
        if "error" in la:
            lines += ["## Latency / first frame", "", f"error: {la['error']}", ""]
        if "alone" in la:
            lines += [
                "## Encode-to-decode latency over WHIP → hub → WHEP (loopback, 720p30 live encoder)",
                "",
                "| run | frames | fps | p50 ms | p95 ms | p99 ms | max ms | unreadable stamps | "
                "server % | client core busy % | UDP rcvbuf errors |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for name in ("alone", "loaded"):
                r = la.get(name)
                if r is None:
                    continue
                label = "only viewer" if name == "alone" else f"with {r['viewers']} load viewers"
                client_core = r["cores"].get(
                    config.client_cpu, r["cores"].get(str(config.client_cpu))
                )
                lines.append(
                    f"| {label} | {r['frames']} | {fmt(r['fps'])} | {fmt(r['p50'])} | {fmt(r['p95'])} | "
                    f"{fmt(r['p99'])} | {fmt(r['max'])} | {r['unreadable']} | "
                    f"{r['cpu']['server']:.1f} | {fmt(client_core)} | "
                    f"{r['udp'].get('RcvbufErrors', 0)} |"
                )
            worst = max(
                (la[n]["p95"] for n in ("alone", "loaded") if n in la and la[n]["p95"] is not None),
                default=None,
            )
            ratio = (
                la["loaded"]["p95"] / la["alone"]["p95"]
                if "loaded" in la and la["loaded"]["p95"] and la["alone"]["p95"]
                else None
            )
            lines += [
                "",
                f"p95 loaded / alone: {fmt(ratio, '.2f')}×; goal p95 ≤ {GOAL_LATENCY_P95_MS:.0f} ms: "
                f"**{_verdict(None if worst is None else worst <= GOAL_LATENCY_P95_MS)}** "
                f"(findings: p50 ~75 ms, p95 ~91 ms); load viewers' delivery min "
                f"{fmt(la.get('loaded', {}).get('delivery_min'), '.2f')}",
                "",
            ]
        if "ttff" in la:
            t = la["ttff"]
            lines += [
                "## Time to first frame for a late viewer (WHEP POST → first decoded frame)",
                "",
                "| | p50 ms | p95 ms | max ms |",
                "|---|---:|---:|---:|",
            ]
            for key, label in (
                ("answer", "POST → 201 answer"),
                ("connected", "POST → ICE + DTLS connected"),
                ("first_frame", "POST → first decoded frame"),
                ("first_frame_age", "age of that first frame (its stamp)"),
                ("live", "POST → first frame ≤ 150 ms old"),
            ):
                lines.append(
                    f"| {label} | {fmt(t[f'{key}_p50'])} | {fmt(t[f'{key}_p95'])} | {fmt(t[f'{key}_max'])} |"
                )
            lines += [
                "",
                f"{len(t['joins'])} joins, {t['failed']} without a frame; {t['joins_with_drops']} joins "
                f"saw UDP receive-buffer drops ({t['rcvbuf_drops']} datagrams, machine-wide counter); "
                f"the publisher got {fmt(la.get('keyframe_requests'), 'd')} keyframe requests (PLI)",
                f"goal ≤ {GOAL_TTFF_MS:.0f} ms "
                f"(p95 first frame): **{_verdict(None if t['first_frame_p95'] is None else t['first_frame_p95'] <= GOAL_TTFF_MS)}**",
                "",
            ]
    so = results.get("soak")
    if so is not None:
        lines += ["## Memory over time: 1 publisher + 10 WHEP viewers (fresh server)", ""]
        if "error" in so:
            lines += [f"error: {so['error']}", ""]
        else:
            mib = 2**20
            lines += [
                "| t s | RSS MiB | server % | threads | fds |",
                "|---:|---:|---:|---:|---:|",
            ]
            step = max(1, len(so["samples"]) // 12)
            shown = so["samples"][::step]
            if shown[-1] is not so["samples"][-1]:
                shown.append(so["samples"][-1])
            for s in shown:
                lines.append(
                    f"| {s['t']:.0f} | {s['rss'] / mib:.1f} | {s['cpu']:.1f} | {s['threads']} | {s['fds']} |"
                )
            slope = so["slope_kib_min"]
            second = so["slope_second_half_kib_min"]
            verdict = "–"
            if config.soak < SOAK_MIN_SECONDS:
                verdict = f"too short to tell (under {SOAK_MIN_SECONDS:.0f} s)"
            elif slope is not None and second is not None:
                high = [x > SOAK_SLOPE_KIB_MIN for x in (slope, second)]
                verdict = "met" if not any(high) else ("missed" if all(high) else "inconclusive")
            lines += [
                "",
                f"after a {so['warmup_s']:.0f} s warm-up: RSS {so['rss_start'] / mib:.1f} → "
                f"{so['rss_end'] / mib:.1f} MiB, slope {fmt(slope, '.1f')} KiB/min "
                f"(second half {fmt(second, '.1f')} KiB/min); "
                f"threads {so['threads'][0]} → {so['threads'][1]}, fds {so['fds'][0]} → {so['fds'][1]}; "
                f"mean server CPU {so['cpu_mean']:.1f} %; delivery min {fmt(so['delivery_min'], '.2f')}",
                f"goal no growth (slope ≤ {SOAK_SLOPE_KIB_MIN} KiB/min over the run and over its "
                f"second half): **{verdict}**",
                "",
            ]
    return "\n".join(lines)
