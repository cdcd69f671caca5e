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


async def test_force_polling_picks_up_changes(
    tmp_path: Path, all_providers: dict[str, Provider], probe: type[ProbeProvider]
) -> None:
    """For network file systems that send no change events (configWatch.forcePolling): the dir
    is polled, and a new tenant file is live within a poll or two."""
    cfg = ConfigDir(tmp_path / "config")
    (cfg.path / "tenants").mkdir(parents=True)
    settings = default_daemon_settings(tmp_path / "x.db")
    cfg.write_daemon({**settings, "configWatch": {"forcePolling": True, "pollInterval": "200ms"}})
    registry = TenantRegistry(cfg.path, all_providers, env={})
    registry.load()
    assert registry.snapshot.daemon.config_watch.force_polling

    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_config(registry, stop))
    try:
        await asyncio.sleep(0.5)  # the first poll has seen the empty dir
        cfg.write_tenant(
            "polled",
            {
                "name": "Polled",
                "apiKeys": ["polled-key-01"],
                "channels": {"sms": {"provider": "probe"}},
            },
        )
        await eventually(lambda: registry.snapshot.tenant("polled") is not None)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(watcher, timeout=10)
