"""Hot reload: watch the config dir and hand each changed path to the registry.

watchfiles debounces 1.6 s by default; changes must be live within 1 s, so batches are cut after
50 ms of quiet. Whatever the event (an editor may write in place, truncate then write, or write a
temporary file and rename it over), the registry looks at the file as it is now: present and
valid, present and invalid (last good kept), or gone (tenant removed).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
import watchfiles

from pipecored.config.registry import TenantRegistry

log = structlog.get_logger("pipecored.config")

DEBOUNCE_MS = 50
STEP_MS = 20


async def watch_config(registry: TenantRegistry, stop: asyncio.Event) -> None:
    root = registry.config_dir.resolve()
    async for changes in watchfiles.awatch(
        root,
        debounce=DEBOUNCE_MS,
        step=STEP_MS,
        stop_event=stop,
        recursive=True,
        watch_filter=None,
        ignore_permission_denied=True,
    ):
        for path in sorted({Path(p) for _, p in changes}):
            try:
                registry.path_changed(_under(registry.config_dir, root, path))
            except Exception:
                # A reload must never stop the watcher; the registry already logged the details.
                log.exception("config.reload_crashed", path=str(path))


def _under(config_dir: Path, root: Path, path: Path) -> Path:
    """Map a resolved path from watchfiles back under the configured directory."""
    try:
        return config_dir / path.relative_to(root)
    except ValueError:
        return path
