"""Hot reload: watch the config dir and hand each changed path to the registry.

watchfiles debounces 1.6 s by default; changes must be live within 1 s, so batches are cut after
50 ms of quiet. Whatever the event (an editor may write in place, truncate then write, or write a
temporary file and rename it over), the registry looks at the file as it is now: present and
valid, present and invalid (last good kept), or gone (tenant removed). When a directory or a
symlink changes instead (tenants/ swapped whole, a Kubernetes ConfigMap's ..data link), the
registry compares the whole dir with what is live. Files are read and parsed in a thread and
applied on the event loop (see the registry's docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from pathlib import Path

import structlog
import watchfiles

from pipecored.config.registry import FileRead, TenantRegistry

log = structlog.get_logger("pipecored.config")

DEBOUNCE_MS = 50
STEP_MS = 20


async def watch_config(registry: TenantRegistry, stop: asyncio.Event) -> None:
    root = registry.config_dir.resolve()
    watch = registry.snapshot.daemon.config_watch
    if watch.force_polling:
        log.info("config.watch_polling", interval_seconds=watch.poll_interval)
    batches = watchfiles.awatch(
        root,
        debounce=DEBOUNCE_MS,
        step=STEP_MS,
        stop_event=stop,
        recursive=True,
        watch_filter=None,
        ignore_permission_denied=True,
        # None leaves watchfiles' own WATCHFILES_FORCE_POLLING environment variable in charge
        force_polling=True if watch.force_polling else None,
        poll_delay_ms=round(watch.poll_interval * 1000),
    )
    # watchfiles sets up the OS watch at the first step of the iteration. A file written
    # between the registry's load and that moment (the daemon opens its store and its socket in
    # between) made no event this watch can see, so once the watch is in place the dir is
    # compared with what is live.
    first = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0)  # lets that first step run
    await _reload(registry, [], whole_dir=True)
    with contextlib.suppress(StopAsyncIteration):  # the stop event ends the iteration
        changes = await first
        while True:
            paths = sorted({_under(registry.config_dir, root, Path(p)) for _, p in changes})
            await _reload(registry, paths)
            changes = await anext(batches)


async def _reload(registry: TenantRegistry, paths: list[Path], *, whole_dir: bool = False) -> None:
    """Read the files in a thread (a huge or slow file must not stall the loop that serves
    requests), then apply them here, on the loop, one at a time."""
    reads = await asyncio.to_thread(_read, registry, paths, whole_dir)
    _guarded(functools.partial(registry.apply, reads), ", ".join(str(r.path) for r in reads))


def _read(registry: TenantRegistry, paths: list[Path], whole_dir: bool) -> list[FileRead]:
    reads: list[FileRead] = []
    if whole_dir:
        _guarded(lambda: reads.extend(registry.read_all_changed()), "(startup)")
    for path in paths:
        _guarded(
            functools.partial(lambda p: reads.extend(registry.read_change(p)), path), str(path)
        )
    # one read per file: a directory event reads the whole dir, its files may have events too
    return list({read.path: read for read in reads}.values())


def _guarded(reload: Callable[[], None], path: str) -> None:
    try:
        reload()
    except Exception:
        # A reload must never stop the watcher; the registry already logged the details.
        log.exception("config.reload_crashed", path=path)


def _under(config_dir: Path, root: Path, path: Path) -> Path:
    """Map a resolved path from watchfiles back under the configured directory."""
    try:
        return config_dir / path.relative_to(root)
    except ValueError:
        return path
