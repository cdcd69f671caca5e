"""Stopping the daemon's background tasks without waiting for ever on one that does not stop.

A cancelled task can go on running: Python 3.11's ``asyncio.wait_for`` (inside psycopg_pool,
among others) loses a cancellation that arrives as the future it waits for completes (CPython
gh-86296), and a loop written ``while True`` then runs its next turn. So every loop of the
daemon also checks a stop flag of its own, and stopping cancels and then waits a bounded time:
a task still running after it is named in the log and left behind, and shutdown goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any, Final

import structlog

log = structlog.get_logger("pipecored")

# Longer than any loop's sleep between turns (the PostgreSQL heartbeat's 5 s), so a loop that
# lost its cancellation still sees its stop flag within the wait.
STOP_WAIT_SECONDS: Final = 6.0


class StopSignal:
    """Set once, when a part of the daemon begins to stop. Its loops check it between turns
    and pause on it, so a loop whose cancellation was lost ends at its next check."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the signal is set meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # no task per wait, unlike wait_for
                await self._event.wait()


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any] | None], *, within: float | None = None
) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` (``None`` entries are skipped), wait up to ``within`` seconds
    (:data:`STOP_WAIT_SECONDS` by default) for them to end and return those still running,
    after logging their names."""
    pending = {t for t in tasks if t is not None}
    if not pending:
        return set()
    for task in pending:
        task.cancel()
    wait = STOP_WAIT_SECONDS if within is None else within
    done, running = await asyncio.wait(pending, timeout=wait)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved: an error on the way out is not "never retrieved"
    if running:
        log.warning("tasks.still_running", tasks=sorted(t.get_name() for t in running))
    return running
