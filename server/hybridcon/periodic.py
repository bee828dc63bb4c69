"""Periodic work with one error policy: a failing round is logged, and the job goes on.

Viewer counts, poll results, scheduled polls, reactions, stream health and the keyset
watch all run on :class:`Periodic`. A round that raises is logged with its traceback at
most once a minute per job (an outage must not flood the log; the skipped ones are
counted in the next line), and the next round runs as planned. Only cancellation
(:meth:`Periodic.stop`) ends a job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

ERROR_LOG_SECONDS = 60.0
"""At most one traceback per job in this many seconds."""

Action = Callable[[], Awaitable[None] | None]


class Periodic:
    """Named jobs, each run every so many seconds until :meth:`stop`."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def every(self, seconds: float, action: Action, name: str) -> None:
        """Run ``action`` (plain or async) every ``seconds``, the first time after one wait.

        Raises:
            ValueError: a job of that name runs already.
        """
        if name in self._tasks and not self._tasks[name].done():
            raise ValueError(f"a periodic job named {name!r} runs already")
        self._tasks[name] = asyncio.get_running_loop().create_task(
            _run(seconds, action, name), name=name
        )

    def __contains__(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    async def stop(self) -> None:
        """Cancel every job and wait for them."""
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _run(seconds: float, action: Action, name: str) -> None:
    last_logged = -ERROR_LOG_SECONDS
    skipped = 0
    while True:
        await asyncio.sleep(seconds)
        try:
            result = action()
            if result is not None:
                await result
        except Exception:
            now = time.monotonic()
            if now - last_logged >= ERROR_LOG_SECONDS:
                log.exception("periodic_job_failed", job=name, not_logged_since=skipped)
                last_logged, skipped = now, 0
            else:
                skipped += 1
