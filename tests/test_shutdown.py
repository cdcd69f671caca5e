"""Stopping never waits for ever on a background loop that does not stop.

Python 3.11's ``asyncio.wait_for`` (inside psycopg_pool) can lose a cancellation that arrives as
the future it waits for completes (CPython gh-86296): the store call returns as if nothing
happened, and a loop written ``while True`` goes on to its next turn. These tests make a store
call behave that way, through the daemon's own start and stop, and require that stopping ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import structlog

from pipecored.store.sqlite import SQLiteStore
from tests.conftest import WAIT

# (the store call a background loop makes at once when it starts, the loop's task name)
LOOPS = [("queue_depth", "housekeeping"), ("outbox_depth", "events-gauges")]


@pytest.mark.parametrize(("call", "task"), LOOPS)
async def test_a_loop_whose_store_call_loses_its_cancellation_still_stops(
    app_client_factory: Any, monkeypatch: pytest.MonkeyPatch, call: str, task: str
) -> None:
    entered = asyncio.Event()
    calls = 0

    async def loses_the_cancellation(self: SQLiteStore, **_: Any) -> tuple[int, float]:
        nonlocal calls
        calls += 1
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):  # lost, as wait_for loses it
            await asyncio.sleep(3600)
        return 0, 0.0

    monkeypatch.setattr(SQLiteStore, call, loses_the_cancellation)
    with structlog.testing.capture_logs() as logs:
        async with asyncio.timeout(WAIT), app_client_factory():
            await entered.wait()
    # the loop saw it was stopping and made no further call
    assert calls == 1
    assert not [e for e in logs if e["event"] == "tasks.still_running"]


@pytest.mark.parametrize(("call", "task"), LOOPS)
async def test_a_loop_that_never_stops_is_left_behind_and_named_in_the_log(
    app_client_factory: Any, monkeypatch: pytest.MonkeyPatch, call: str, task: str
) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def ignores_every_cancellation(self: SQLiteStore, **_: Any) -> tuple[int, float]:
        entered.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()
        return 0, 0.0

    monkeypatch.setattr(SQLiteStore, call, ignores_every_cancellation)
    monkeypatch.setattr("pipecored.tasks.STOP_WAIT_SECONDS", 0.5)  # what stopping waits for it
    try:
        with structlog.testing.capture_logs() as logs:
            async with asyncio.timeout(WAIT), app_client_factory():
                await entered.wait()
        (line,) = [e for e in logs if e["event"] == "tasks.still_running"]
        assert line["tasks"] == [task]
    finally:
        release.set()  # the task left behind ends before the test's loop closes
        left = [t for t in asyncio.all_tasks() if t.get_name() == task]
        await asyncio.wait(left, timeout=WAIT)
