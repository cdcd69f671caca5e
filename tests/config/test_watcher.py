"""The watcher reads and parses changed files off the event loop: a slow file must not stall
the requests the loop serves."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

from pipecored import Provider
from pipecored.config.registry import TenantRegistry
from pipecored.config.watcher import watch_config
from tests.config.conftest import ProbeProvider
from tests.conftest import ConfigDir, default_daemon_settings, eventually


async def test_a_slow_file_is_parsed_while_the_loop_keeps_serving(
    tmp_path: Path, all_providers: dict[str, Provider], probe: type[ProbeProvider]
) -> None:
    cfg = ConfigDir(tmp_path / "config")
    (cfg.path / "tenants").mkdir(parents=True)
    cfg.write_daemon(default_daemon_settings(tmp_path / "x.db"))
    registry = TenantRegistry(cfg.path, all_providers, env={})
    registry.load()

    parsing = threading.Event()
    release = threading.Event()
    released_by_the_loop: list[bool] = []

    def slow_check() -> None:
        parsing.set()
        # Only a coroutine on the loop sets this. Parsed on the loop, the file would block it
        # here: nothing could set it, and the wait would time out.
        released_by_the_loop.append(release.wait(timeout=5))

    probe.during_check.append(slow_check)
    cfg.write_tenant(
        "slow",
        {"name": "Slow", "apiKeys": ["slow-key-01"], "channels": {"sms": {"provider": "probe"}}},
    )
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_config(registry, stop))
    try:
        await eventually(parsing.is_set)
        release.set()
        await eventually(lambda: registry.snapshot.tenant("slow") is not None)
    finally:
        release.set()
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(watcher, timeout=10)
    assert released_by_the_loop == [True]
