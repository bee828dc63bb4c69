"""A small Chromium driver for end-to-end tests, over the DevTools protocol (CDP).

No Playwright or Puppeteer: the Debian ``chromium`` package, started headless with a
fake camera and microphone, driven over ``--remote-debugging-pipe`` (JSON messages
ending in a NUL byte, commands on Chromium's fd 3, answers and events on its fd 4): no
debugging port, so it works the same inside a network namespace (``tests/netns.py``)
where a port on the namespace's loopback could not be reached. Pages are CDP targets
attached in *flat* mode, so every page's commands and events travel on that one pipe,
told apart by ``sessionId``.

Usage::

    async with Browser.launch() as browser:
        page = await browser.new_page("http://127.0.0.1:8080/page")
        value = await page.evaluate("someAsyncFunction(1, 2)", timeout=10)

``evaluate`` awaits promises and returns the value as JSON; a JavaScript exception
becomes :class:`JavaScriptError` with the page's message and stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from netns import Namespace

# What the tests need of Chromium, and nothing that would reach the network.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # Pages other than the focused one must not be throttled: each plays or sends media.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    # Real host candidates instead of mDNS names (a page without camera permission
    # would otherwise offer only ``<uuid>.local`` candidates).
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """The Chromium executable (``$CHROMIUM`` or ``chromium`` on the PATH), if any."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    return shutil.which("chromium") or shutil.which("chromium-browser")


class CdpError(RuntimeError):
    """A DevTools command failed."""


class JavaScriptError(RuntimeError):
    """An exception thrown (or a promise rejected) in the page."""


class Page:
    """One tab: navigate and evaluate, and what its console said."""

    def __init__(self, browser: Browser, target_id: str, session_id: str) -> None:
        self.browser = browser
        self.target_id = target_id
        self.session_id = session_id
        self.console: list[str] = []
        self._loaded = asyncio.Event()

    async def send(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        """A CDP command on this page's session."""
        return await self.browser.send(method, params, session_id=self.session_id, **kw)

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            self._loaded.set()
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
            )
            self.console.append(f"{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console.append(f"exception: {_describe(details)}")

    async def navigate(self, url: str, *, timeout: float = 10.0) -> None:
        """Load ``url`` and wait for its load event."""
        self._loaded.clear()
        result = await self.send("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise CdpError(f"navigating to {url}: {result['errorText']}")
        await asyncio.wait_for(self._loaded.wait(), timeout)

    async def evaluate(self, expression: str, *, timeout: float = 10.0) -> Any:
        """Evaluate ``expression``, await it if it is a promise, return it as JSON.

        Raises:
            JavaScriptError: the expression threw or its promise was rejected.
            TimeoutError: no answer within ``timeout`` seconds.
        """
        result = await self.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "awaitPromise": True,
                "returnByValue": True,
                "userGesture": True,
            },
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise JavaScriptError(_describe(result["exceptionDetails"]))
        return result.get("result", {}).get("value")

    async def close(self) -> None:
        """Close the tab (quietly if the browser is already gone)."""
        with contextlib.suppress(Exception):
            await self.browser.send("Target.closeTarget", {"targetId": self.target_id}, timeout=5)


def _describe(details: dict[str, Any]) -> str:
    exception = details.get("exception") or {}
    return str(exception.get("description") or details.get("text") or details)


class Browser:
    """A headless Chromium process and the CDP pipe to it."""

    def __init__(self, process: asyncio.subprocess.Process, profile: Path) -> None:
        self.process = process
        self.profile = profile
        self.pages: dict[str, Page] = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._commands: asyncio.WriteTransport | None = None
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(
        cls,
        *,
        executable: str | None = None,
        startup_timeout: float = 20.0,
        namespace: Namespace | None = None,
        flags: Sequence[str] = (),
    ) -> AsyncIterator[Browser]:
        """Start Chromium with a new profile; close it (and delete the profile) after.

        Args:
            executable: the Chromium to run (default: :func:`find_chromium`).
            startup_timeout: seconds Chromium has to answer its first command.
            namespace: run it inside this network namespace.
            flags: more command-line flags.
        """
        executable = executable or find_chromium()
        if executable is None:
            raise FileNotFoundError("no chromium executable (install Debian's chromium)")
        profile = Path(tempfile.mkdtemp(prefix="hybridcon-chromium-"))
        log = (profile / "chromium.log").open("wb")
        # Chromium reads commands on fd 3 and writes on fd 4; bash puts our pipe ends
        # there (dash cannot name descriptors above 9) and execs it (in the namespace).
        to_chromium, commands = os.pipe()
        messages, from_chromium = os.pipe()
        argv = [executable, *CHROMIUM_FLAGS, *flags, f"--user-data-dir={profile}", "about:blank"]
        if namespace is not None:
            argv = namespace.command(*argv)
        redirect = (
            f'exec "$@" 3<&{to_chromium} 4>&{from_chromium} {to_chromium}<&- {from_chromium}>&-'
        )
        try:
            process = await asyncio.create_subprocess_exec(
                "bash",
                "-c",
                redirect,
                "chromium",
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(to_chromium, from_chromium),
                start_new_session=True,  # its own process group, ended with it
            )
        finally:
            os.close(to_chromium)
            os.close(from_chromium)
            log.close()
        browser = cls(process, profile)
        try:
            await browser._connect(commands, messages, startup_timeout)
            yield browser
        finally:
            await browser.close()

    def log_tail(self, lines: int = 30) -> str:
        """The end of Chromium's own output (for failure messages)."""
        try:
            text = (self.profile / "chromium.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def _connect(self, commands: int, messages: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._commands, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(commands, "wb", buffering=0)
        )
        reader = asyncio.StreamReader(limit=1 << 26)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(messages, "rb", buffering=0)
        )
        self._reader = asyncio.create_task(self._read(reader), name="cdp-reader")
        try:
            await self.send("Browser.getVersion", timeout=timeout)
        except (CdpError, TimeoutError) as exc:
            raise RuntimeError(f"chromium did not answer ({exc}):\n{self.log_tail()}") from exc

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await reader.readuntil(b"\0")
            except asyncio.IncompleteReadError:
                break  # Chromium closed its end: it exited
            data = json.loads(raw[:-1])
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is None or future.done():
                    continue
                if "error" in data:
                    future.set_exception(CdpError(str(data["error"])))
                else:
                    future.set_result(data.get("result", {}))
            elif (page := self.pages.get(data.get("sessionId", ""))) is not None:
                page._event(data.get("method", ""), data.get("params", {}))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CdpError("the DevTools pipe closed"))
        self._pending.clear()

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float = 10.0,
    ) -> Any:
        """Send one CDP command and wait for its result."""
        if self._commands is None or self._commands.is_closing():
            raise CdpError("not connected to chromium")
        if self._reader is not None and self._reader.done():
            raise CdpError("chromium has exited")
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        self._commands.write(json.dumps(message).encode() + b"\0")
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(ident, None)

    async def new_page(self, url: str | None = None) -> Page:
        """A new tab, attached, with its console recorded; at ``url`` if given."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        target_id = target["targetId"]
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target_id, "flatten": True}
        )
        page = Page(self, target_id, attached["sessionId"])
        self.pages[page.session_id] = page
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        if url is not None:
            await page.navigate(url)
        return page

    async def close(self) -> None:
        """Close every page and the browser; kill its process group if it lingers."""
        if self._commands is not None and not self._commands.is_closing():
            with contextlib.suppress(Exception):
                await self.send("Browser.close", timeout=5)
            self._commands.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 10)
        # Renderer and utility processes are in the browser's own process group (an
        # id that is not reused while any of them lives).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 5)
        shutil.rmtree(self.profile, ignore_errors=True)
