"""deploy/nginx/hybridcon.conf in front of a real hybridcon: HLS from disk, the rest proxied.

A real nginx (Debian's package, with its ``secure_link`` module) runs the deploy config
as it is in the repository, with only its deployment-specific values filled in: the
listen port, the upstream's port (the app's, on port 0), the HLS folder (the app's
``DATA_DIR/hls``) and the HLS secret, rendered as operations.md tells operators to.
nginx runs in the foreground from its own prefix (never as the system service) and is
stopped after the test.

Everything a viewer and a publisher do goes through nginx: the WebSocket (``/ws``), the
WHIP publish (an aiortc peer sending pre-encoded H.264 + Opus; only its media flows
directly to the app, over ICE), the WHEP offer, and the HLS playlist and segment fetched
with the ``hls_url`` hybridcon hands out in ``stream.state``. They must come from disk by
nginx (the bytes on disk, nginx's headers), and links that are tampered with, for another
stage, or expired must be refused (403, 403, 410).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hybridcon.api.whip import STREAMS
from hybridcon.app import create_app
from hybridcon.core.tokens import Role, TokenRequest
from hybridcon.core.urls import hls_url
from hybridcon.services import SERVICES
from hybridcon.settings import Settings
from media_fixtures import make_media, make_offer, publisher_peer, take_answer, viewer_peer
from support import WsClient, eventually, hls_state

REPO = Path(__file__).resolve().parents[2]
DEPLOY_CONF = REPO / "deploy" / "nginx" / "hybridcon.conf"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
)
SDP = {"Content-Type": "application/sdp"}
STAGE = "impact"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    pytest.mark.skipif(NGINX is None, reason="needs nginx (make system-deps)"),
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (nginx cannot listen on 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def secret_text(secret_file: Path) -> str:
    """The HLS secret as operations.md renders it for nginx: unpadded URL-safe base64."""
    return base64.urlsafe_b64encode(secret_file.read_bytes()).rstrip(b"=").decode()


def render(conf: str, *, port: int, upstream_port: int, hls_dir: Path, secret: str) -> str:
    """The deploy config with this run's values; each placeholder must be there once, so a
    changed config fails here rather than testing something else."""
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{port};",
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream_port};",
        "/var/lib/hybridcon/hls/": f"{hls_dir}/",
        "REPLACE-WITH-THE-HLS-SECRET": secret,
    }
    for old, new in replacements.items():
        assert conf.count(old) == 1, f"{DEPLOY_CONF.name} should hold {old!r} once"
        conf = conf.replace(old, new)
    return conf


@dataclass
class Nginx:
    proc: subprocess.Popen[bytes]
    port: int
    prefix: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text("utf-8", "replace")


def start_nginx(prefix: Path, site: str, port: int) -> Nginx:
    """nginx in the foreground from its own prefix: its own pid, logs and temp folders."""
    prefix.mkdir(parents=True)
    (prefix / "hybridcon.conf").write_text(site)
    temps = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root (CI), workers would switch to an unprivileged user that cannot read the
    # test's private temporary folders; the deploy config itself says nothing about users.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"{user}pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} info;\n"
        "worker_processes 1;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"    access_log {prefix / 'access.log'};\n"
        f"{temps}\n"
        f"    include {prefix / 'hybridcon.conf'};\n"
        "}\n"
    )
    assert NGINX is not None
    # -e: the log for what comes before the config is read (not /var/log/nginx).
    command = [
        NGINX,
        "-p",
        str(prefix),
        "-e",
        str(prefix / "error.log"),
        "-c",
        str(prefix / "nginx.conf"),
    ]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, f"nginx -t refused the deploy config:\n{check.stderr}"
    with open(prefix / "stderr.log", "wb") as stderr:
        proc = subprocess.Popen(
            [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=stderr
        )
    return Nginx(proc, port, prefix)


def stop_nginx(nginx: Nginx) -> None:
    """SIGQUIT (graceful: the master stops its workers and exits), then SIGKILL for the
    master and its workers (which outlive a killed master)."""
    if nginx.proc.poll() is not None:
        return
    workers = psutil.Process(nginx.proc.pid).children()
    nginx.proc.send_signal(signal.SIGQUIT)
    try:
        nginx.proc.wait(10)
    except subprocess.TimeoutExpired:
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                worker.kill()
        nginx.proc.kill()
        nginx.proc.wait(5)


async def peer_port(request: web.Request) -> web.Response:
    assert request.transport is not None
    return web.Response(text=str(request.transport.get_extra_info("peername")[1]))


@pytest.fixture
def nginx_port() -> int:
    return free_port()


@pytest.fixture
async def app_behind_nginx(
    make_settings: Any, nginx_port: int, tmp_path: Path
) -> AsyncIterator[tuple[Settings, TestServer, Nginx]]:
    """hybridcon on port 0 whose public URL is nginx's, and nginx with the deploy config."""
    settings = make_settings(
        public_url=f"http://127.0.0.1:{nginx_port}",
        hls_segment_seconds=1.0,
        whep_max_viewers=5,
    )
    app = create_app(settings)
    # The one addition to the real app: which client port a request came from, to see
    # whether nginx reuses its upstream connections (the config's keepalive pool).
    app.router.add_get("/test/peer-port", peer_port)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    nginx: Nginx | None = None
    try:
        assert server.port is not None
        site = render(
            DEPLOY_CONF.read_text(),
            port=nginx_port,
            upstream_port=server.port,
            hls_dir=settings.hls_dir,
            secret=secret_text(settings.hls_secret_path),
        )
        nginx = start_nginx(tmp_path / "nginx", site, nginx_port)

        def accepting() -> bool:
            assert nginx is not None
            assert nginx.proc.poll() is None, (nginx.prefix / "stderr.log").read_text()
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", nginx_port)) == 0

        await eventually(accepting, timeout=10, what="nginx listening")
        yield settings, server, nginx
    finally:
        if nginx is not None:
            stop_nginx(nginx)
        await server.close()


@pytest.fixture
def no_nginx_left(tmp_path: Path) -> Iterator[None]:
    """After the test, no nginx process (master or worker) runs from this test's prefix."""
    yield
    mark = str(tmp_path / "nginx")
    left = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any(mark in part for part in p.info["cmdline"] or ())
    ]
    assert not left, f"nginx left running: {left}"
    # A graceful stop: nginx removes its pid file only when its master exits cleanly.
    assert not (tmp_path / "nginx" / "nginx.pid").exists()


def issue(server: TestServer, role: Role, scopes: tuple[str, ...] = ("*",)) -> str:
    assert server.app is not None
    token, _ = server.app[SERVICES].auth().issue(TokenRequest(role=role, scopes=scopes), via="test")
    return token


async def connect(session: aiohttp.ClientSession, url: str, token: str) -> WsClient:
    """A WebSocket client through nginx, authenticated."""
    ws = await session.ws_connect(url)
    await ws.send_json({"type": "auth", "token": token})
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "auth.ok", hello
    return WsClient(ws)


async def test_nginx_serves_signed_hls_from_disk_and_proxies_the_rest(
    no_nginx_left: None, app_behind_nginx: tuple[Settings, TestServer, Nginx], tmp_path: Path
) -> None:
    settings, server, nginx = app_behind_nginx
    base = nginx.base
    media = make_media(tmp_path, seconds=6.0, gop_seconds=1.0)
    async with aiohttp.ClientSession() as http:
        # Proxied requests share nginx's kept-alive connections to hybridcon.
        ports = set()
        for _ in range(3):
            async with http.get(f"{base}/test/peer-port") as r:
                assert r.status == 200
                ports.add(await r.text())
        assert len(ports) == 1, f"a new upstream connection per request: {ports}"

        # The WebSocket through nginx: auth, subscribe, pushes.
        watcher = await connect(
            http, base.replace("http", "ws") + "/ws", issue(server, Role.VIEWER)
        )
        snap = await watcher.ok("subscribe", topic=f"stage:{STAGE}")
        assert snap["snapshot"]["stream"]["state"] == "scheduled"

        # WHIP through nginx.
        token = issue(server, Role.BROADCASTER, scopes=(f"stage:{STAGE}",))
        auth = {"Authorization": f"Bearer {token}"}
        pc, player = publisher_peer(media)
        resp = await http.post(
            f"{base}/whip/{STAGE}", data=await make_offer(pc), headers={**SDP, **auth}
        )
        assert resp.status == 201, await resp.text()
        assert resp.headers["Server"].startswith("nginx")
        location = resp.headers["Location"]
        await take_answer(pc, await resp.text())

        state = await watcher.push("stream.state", timeout=10)
        assert state["state"] == "live"
        hls = (await hls_state(watcher))["hls_url"]
        assert hls.startswith(f"{base}/hls/{STAGE}/") and hls.endswith("/index.m3u8")
        folder = hls.rsplit("/", 1)[0]

        # WHEP through nginx: a viewer's offer is answered.
        vpc, watch = viewer_peer()
        resp = await http.post(
            f"{base}/whep/{STAGE}",
            data=await make_offer(vpc),
            headers={**SDP, "Authorization": f"Bearer {issue(server, Role.VIEWER)}"},
        )
        assert resp.status == 201, await resp.text()
        await take_answer(vpc, await resp.text())
        await asyncio.wait_for(watch.frame_seen.wait(), 15)

        # The playlist and a segment, from disk, by nginx.
        async def playlist_has_segments() -> bool:
            async with http.get(hls) as r:
                return r.status == 200 and (await r.text()).count("#EXTINF") >= 2

        await eventually(playlist_has_segments, timeout=20, what="two HLS segments via nginx")
        async with http.get(hls) as r:
            assert r.status == 200, nginx.error_log()
            assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
            assert r.headers["Cache-Control"] == "no-cache"
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            playlist = await r.text()
        segment = next(line for line in playlist.splitlines() if line.endswith(".ts"))
        async with http.get(f"{folder}/{segment}") as r:
            assert r.status == 200, nginx.error_log()
            assert r.headers["Content-Type"] == "video/mp2t"
            assert r.headers["Cache-Control"] == "public, max-age=86400, immutable"
            body = await r.read()
        assert body == (settings.hls_dir / STAGE / segment).read_bytes()
        assert f"/hls/{STAGE}/" in (nginx.prefix / "access.log").read_text()
        # Only playlists and segments come from disk: a playlist being written (its
        # temporary name) and other files are not served, even with a valid token.
        for name in (f".{segment}.tmp", "notes.txt"):
            (settings.hls_dir / STAGE / name).write_text("#EXTM3U\n")
            async with http.get(f"{folder}/{name}") as r:
                assert r.status == 404, (name, r.status)

        # Refused: a tampered MD5, the token on another stage, an expired link (signed by
        # hybridcon's own function with its secret, expired a minute ago).
        md5 = folder.rsplit("/", 1)[1].split(".")[2]
        flipped = ("A" if md5[0] != "A" else "B") + md5[1:]
        tampered = hls.replace(f".{md5}/", f".{flipped}/")
        other_stage = hls.replace(f"/hls/{STAGE}/", "/hls/plenary/")
        assert server.app is not None
        streams = server.app[STREAMS]
        now = server.app[SERVICES].clock()
        expired = hls_url(base, streams.hls_secret, STAGE, now - timedelta(minutes=1))
        for url, status in ((tampered, 403), (other_stage, 403), (expired, 410)):
            async with http.get(url) as r:
                assert r.status == status, (url, r.status)
                assert r.headers["Server"].startswith("nginx")
                # Like hybridcon's own errors: a page on another origin can read them.
                assert r.headers.get("Access-Control-Allow-Origin") == "*"
        # hybridcon refuses the same expired link itself (403, its one code for both).
        direct = expired.replace(base, f"http://127.0.0.1:{server.port}")
        async with http.get(direct) as r:
            assert r.status == 403

        # The publisher ends the stream through nginx; everyone hears it over the WebSocket.
        resp = await http.delete(f"{base}{location}", headers=auth)
        assert resp.status == 200
        assert (await watcher.push("stream.state", timeout=10))["state"] == "ended"
        for peer in (pc, vpc):
            await peer.close()
        if player.video is not None:
            player.video.stop()
        await watcher.close()
