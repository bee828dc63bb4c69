"""A real Janus (Debian's ``janus`` package) for the ``janus`` room provider's tests.

Janus gathers ICE candidates on every interface but loopback (it always skips loopback,
``ice_enforce_list`` cannot name ``lo``) and aioice leaves 127.0.0.1 out too, so media
cannot flow between Janus and aiortc peers over loopback. :class:`JanusProcess` therefore
runs Janus inside a network namespace of the test's own (``tests/netns.py``): it binds its
API (WebSocket, admin WebSocket) to the namespace's end of the veth pair and gathers
its candidates on that interface alone. The test process stays in the host's namespace:
it reaches the API over the pair, and its aiortc peers gather on the host end
(``ns.host_address``), so media crosses the pair and nothing else. The namespace's /30 is
allowed in the ICE guard by the ``test_namespace`` fixture.

Janus's configuration is written per run into a temporary folder (``janus -F``) by the
container image's own script, ``deploy/janus/janus-config.sh``: only the VideoRoom
plugin and the WebSocket transport, the admin API on, token authentication on, a small
RTP port range (the namespace is the run's own, so no other Janus can hold those
ports), a short session timeout.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridcon.rooms.janus import room_number
from hybridcon.rooms.janus_api import JanusAdmin, JanusConnection, JanusSession
from netns import Namespace, namespace
from netns import unavailable as netns_unavailable

LIBDIR = Path("/usr/lib/x86_64-linux-gnu/janus")
CONFIG_SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "janus" / "janus-config.sh"
API_PORT = 8188
ADMIN_PORT = 7188
RTP_RANGE = "20000-20099"
SESSION_TIMEOUT = 30


def unavailable() -> str | None:
    """Why a Janus cannot be started here, or None."""
    if shutil.which("janus") is None:
        return "Debian's janus package is not installed (make system-deps installs it with apt)"
    if not (LIBDIR / "plugins" / "libjanus_videoroom.so").exists():
        return f"janus is installed but its VideoRoom plugin is not in {LIBDIR}/plugins"
    return None


def skip_reason() -> str | None:
    """Why these tests cannot run a Janus here (no package, or no namespaces), or None."""
    return unavailable() or netns_unavailable()


def write_config(
    directory: Path,
    *,
    address: str,
    interface: str,
    admin_secret: str,
    room_key: str,
    rtp_range: str = RTP_RANGE,
) -> None:
    """Write the configuration files Janus reads from ``directory``, with the script the
    container image runs (``deploy/janus/janus-config.sh``), so the tests run the
    deployment's configuration: the VideoRoom plugin and the WebSocket transport only,
    token authentication and the admin API on."""
    directory.mkdir(parents=True, exist_ok=True)
    room_key_file, admin_secret_file = directory / "room.key", directory / "admin.secret"
    room_key_file.write_text(room_key + "\n")
    admin_secret_file.write_text(admin_secret + "\n")
    subprocess.run(
        [str(CONFIG_SCRIPT), str(directory)],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "JANUS_WS_IP": address,
            "JANUS_ROOM_KEY_FILE": str(room_key_file),
            "JANUS_ADMIN_SECRET_FILE": str(admin_secret_file),
            "JANUS_RTP_PORT_RANGE": rtp_range,
            "JANUS_ICE_ENFORCE_LIST": interface,
            "JANUS_SESSION_TIMEOUT": str(SESSION_TIMEOUT),
            "JANUS_LIBDIR": str(LIBDIR),
        },
        check=True,
        capture_output=True,
        text=True,
    )


@dataclass
class JanusProcess:
    """One Janus in ``ns``; :meth:`start` it, :meth:`kill` it, :meth:`start` it again.

    Attributes:
        ns: the namespace it runs in.
        directory: its configuration folder and log.
        admin_secret: the admin API's secret.
        room_key: the VideoRoom plugin's ``admin_key`` (needed to create rooms).
        rtp_range: Janus's RTP ports, one per peer connection (bundled): the rooms
            benchmark needs more than the tests' 100.
    """

    ns: Namespace
    directory: Path
    admin_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    room_key: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    rtp_range: str = RTP_RANGE
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The Janus API's WebSocket URL."""
        return f"ws://{self.ns.address}:{API_PORT}"

    @property
    def admin_url(self) -> str:
        """The admin API's WebSocket URL."""
        return f"ws://{self.ns.address}:{ADMIN_PORT}"

    @property
    def log(self) -> Path:
        """Janus's output."""
        return self.directory / "janus.log"

    def start(self, timeout: float = 10.0) -> None:
        """Start Janus and wait until both its API ports accept connections.

        Raises:
            RuntimeError: it exited or did not listen in time (the message has its log's tail).
        """
        interface = self._inside_interface()
        write_config(
            self.directory,
            address=self.ns.address,
            interface=interface,
            admin_secret=self.admin_secret,
            room_key=self.room_key,
            rtp_range=self.rtp_range,
        )
        with self.log.open("ab") as out:
            # `ip netns exec` execs janus in place: the pid is Janus's own.
            self.process = subprocess.Popen(
                self.ns.command("janus", "-F", str(self.directory), "-o"),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not (self._listening(API_PORT) and self._listening(ADMIN_PORT)):
            if self.process.poll() is not None:
                raise RuntimeError(f"janus exited with {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"janus did not listen within {timeout} s:\n{self.tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: Janus is gone at once, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)
        self.process = None

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not exited within 5 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def tail(self, lines: int = 40) -> str:
        """The end of Janus's log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def _listening(self, port: int) -> bool:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            return probe.connect_ex((self.ns.address, port)) == 0

    def _inside_interface(self) -> str:
        # netns.namespace() names the pair's ends "<tag>h" (host) and "<tag>n" (inside).
        return self.ns.host_interface[:-1] + "n"


@contextlib.contextmanager
def running_janus(rtp_range: str = RTP_RANGE) -> Iterator[JanusProcess]:
    """A Janus in a namespace of its own, started; SIGTERM and the namespace deleted after.
    (The caller skips first when :func:`skip_reason` says why it cannot run.)"""
    directory = Path(tempfile.mkdtemp(prefix="hybridcon-janus-"))
    try:
        with namespace() as ns:
            server = JanusProcess(ns, directory, rtp_range=rtp_range)
            server.start()
            try:
                yield server
            finally:
                server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def app_settings(server: JanusProcess, keys: Path) -> dict[str, Any]:
    """The settings that point hybridcon's ``janus`` provider at ``server``: its URLs, and
    its admin secret and VideoRoom key in files under ``keys`` (as an operator gives them)."""
    keys.mkdir(parents=True, exist_ok=True)
    admin_secret, room_key = keys / "janus-admin.secret", keys / "janus-room.key"
    admin_secret.write_text(server.admin_secret + "\n")
    room_key.write_text(server.room_key + "\n")
    return {
        "rooms_provider": "janus",
        "janus_url": server.url,
        "janus_admin_url": server.admin_url,
        "janus_admin_secret_file": admin_secret,
        "janus_room_key_file": room_key,
        "janus_timeout": 5.0,
    }


# --- looking at Janus directly, outside the provider -------------------------------------------


class janus_session:
    """A Janus session of the test's own (its own stored token), outside the provider."""

    def __init__(self, server: JanusProcess) -> None:
        self.server = server
        self.token = secrets.token_urlsafe(12)
        self.connection = JanusConnection(server.url)

    async def __aenter__(self) -> JanusSession:
        await JanusAdmin(self.server.admin_url, self.server.admin_secret).add_token(self.token)
        await self.connection.connect()
        self.session = JanusSession(self.connection, token=self.token)
        await self.session.create()
        return self.session

    async def __aexit__(self, *_exc: object) -> None:
        await self.session.destroy()
        await self.connection.close()
        await JanusAdmin(self.server.admin_url, self.server.admin_secret).remove_token(self.token)


async def room_exists(server: JanusProcess, room: str) -> bool:
    """Whether Janus has hybridcon's room ``room``."""
    async with janus_session(server) as session:
        handle = await session.attach()
        reply = await handle.message({"request": "exists", "room": room_number(room)})
        return bool(reply.data["exists"])


async def participants(server: JanusProcess, room: str) -> list[str]:
    """Who Janus has in the room (display names)."""
    async with janus_session(server) as session:
        handle = await session.attach()
        reply = await handle.message({"request": "listparticipants", "room": room_number(room)})
        return sorted(str(p.get("display")) for p in reply.data["participants"])
