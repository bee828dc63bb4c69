"""Benchmark agents: child processes that run WebRTC peers, driven over JSON lines.

Both sides of the protocol: :class:`AgentProcess` starts a child module and calls it
(one JSON object per line on its stdin: ``{"id", "cmd", ...params}``; answers on its
stdout: ``{"id", "result"}`` or ``{"id", "error"}``), and :func:`serve_lines` is the
child's loop, which runs each command as a task of its own and stops at ``quit``. The
media benchmark's agent (:mod:`tests.bench.media.agent`) and the rooms benchmark's
(:mod:`tests.bench.rooms_agent`) both use them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class AgentProcess:
    """A child ``python -m <module>`` and its JSON-lines RPC."""

    def __init__(
        self, name: str, proc: asyncio.subprocess.Process, log: Any, timeout: float
    ) -> None:
        self.name = name
        self.proc = proc
        self.timeout = timeout
        self._log = log
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls,
        name: str,
        work: Path,
        module: str,
        *args: str,
        cpu: int | None = None,
        nice: int = 0,
        timeout: float = 120.0,
    ) -> AgentProcess:
        """Start ``module`` with ``args``, on ``cpu`` (when the machine has it) at ``nice``;
        its stderr goes to ``work/agent-<name>.log``; a call waits ``timeout`` at most."""

        def prepare() -> None:  # in the child, before exec: its threads inherit both
            if cpu is not None and cpu < (os.cpu_count() or 1):
                os.sched_setaffinity(0, {cpu})
            if nice:
                os.nice(nice)

        log = open(work / f"agent-{name}.log", "wb")  # noqa: ASYNC230, SIM115 - closed in stop()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            preexec_fn=prepare,
            limit=1 << 24,
        )
        return cls(name, proc, log, timeout)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            message = json.loads(line)
            future = self._pending.pop(message.get("id"), None)
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(RuntimeError(f"agent {self.name}: {message['error']}"))
                else:
                    future.set_result(message["result"])
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RuntimeError(f"agent {self.name} exited"))

    async def call(self, cmd: str, timeout: float | None = None, **params: Any) -> Any:
        """Run ``cmd`` in the child and return its result.

        Raises:
            RuntimeError: the child answered with an error, or exited.
            TimeoutError: no answer within ``timeout`` (default: the agent's).
        """
        assert self.proc.stdin is not None
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        self.proc.stdin.write((json.dumps({"id": ident, "cmd": cmd, **params}) + "\n").encode())
        await self.proc.stdin.drain()
        return await asyncio.wait_for(future, self.timeout if timeout is None else timeout)

    async def stop(self) -> None:
        """Ask the child to quit (30 s), else kill it."""
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"cmd": "quit", "id": 0}\n')
                await self.proc.stdin.drain()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        self._log.close()


async def serve_lines(
    handlers: Mapping[str, Handler], close: Callable[[], Awaitable[None]]
) -> None:
    """The child's side: read commands from stdin until ``quit`` or its end, run each as
    a task of its own, answer on stdout; then cancel what still runs, ``close()``, and
    say goodbye."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    running: set[asyncio.Task[None]] = set()

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    async def handle(command: dict[str, Any]) -> None:
        try:
            say({"id": command["id"], "result": await handlers[command["cmd"]](command)})
        except Exception as exc:
            say({"id": command["id"], "error": f"{type(exc).__name__}: {exc}"})

    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        task = asyncio.ensure_future(handle(command))
        running.add(task)
        task.add_done_callback(running.discard)
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    with contextlib.suppress(Exception):
        await close()
    say({"id": None, "result": "bye"})
