"""One config API write is one reload (issue 13: a write counted three, the API's own swap and
the watcher seeing the file it wrote)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.conftest import ADMIN_KEY, ConfigDir, Daemon, auth, wait_until


def _reloads(daemon: Daemon) -> float:
    for line in httpx.get(f"{daemon.url}/metrics").text.splitlines():
        if line.startswith("pipecore_config_reloads_total "):
            return float(line.split()[1])
    raise AssertionError("no pipecore_config_reloads_total")


def test_an_api_write_counts_one_reload_and_a_hand_edit_another(
    config_dir: ConfigDir, daemon_factory: Callable[..., Daemon]
) -> None:
    daemon = daemon_factory(config_dir.path).start()
    before = _reloads(daemon)
    switched = httpx.post(
        f"{daemon.url}/messaging/config/provider",
        headers=auth(ADMIN_KEY),
        json={"tenantId": "demo", "channel": "sms", "provider": "console", "isActive": False},
    )
    assert switched.status_code == 200, switched.text
    # The watcher sees the file the API wrote within its debounce; a window several times
    # that long is where the extra counts came.
    time.sleep(3)
    assert _reloads(daemon) == before + 1
    # an operator's edit is still a reload of its own
    path = config_dir.path / "tenants" / "demo.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\n# edited by hand\n", encoding="utf-8")
    wait_until(lambda: _reloads(daemon) == before + 2, timeout=20)
