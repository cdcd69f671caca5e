"""A third party's alert receiver, pip-installed outside the repository, reads its settings from
``plugins.<name>`` in pipecored.yaml, and a reload of that file reaches it without a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.responses import Response

from tests.conftest import ConfigDir, Daemon, default_daemon_settings, wait_until
from tests.fakes.httpjson import HttpJsonGateway
from tests.fakes.server import FakeServer

ACME = "acme-key-0123456789"

PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "pipecored-pager"
version = "1.0.0"
dependencies = ["pipecored>=0.1"]

[project.entry-points.pipecored]
pager = "pipecored_pager"

[tool.setuptools]
packages = ["pipecored_pager"]
"""

# Only the public API, as a third party writes it: a pager that wants a URL and a routing key.
PLUGIN = """\
from __future__ import annotations

from collections.abc import Callable

import httpx

from pipecored import Alert, AlertContext, AlertReceiver, AlertSendError, hookimpl


class Pager(AlertReceiver):
    name = "pager"

    def enabled(self, ctx: AlertContext) -> bool:
        return "url" in ctx.settings

    async def send(self, alert: Alert, ctx: AlertContext) -> None:
        body = {
            "routingKey": ctx.settings["routingKey"],
            "action": "trigger" if alert.status == "firing" else "resolve",
            "dedupKey": f"{alert.tenant}/{alert.channel}/{alert.provider}",
        }
        try:
            response = await ctx.http.post(ctx.settings["url"], json=body)
        except httpx.TransportError as exc:
            raise AlertSendError(f"cannot reach the pager ({type(exc).__name__})") from None
        if not response.is_success:
            raise AlertSendError(f"the pager answered HTTP {response.status_code}")


@hookimpl
def register_alert_receivers(register: Callable[[AlertReceiver], None]) -> None:
    register(Pager())
"""


@pytest.fixture
def pager_site(tmp_path: Path) -> Path:
    """The pager plugin, pip-installed into a folder of its own as a third party's would be."""
    source = tmp_path / "pipecored-pager"
    (source / "pipecored_pager").mkdir(parents=True)
    (source / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (source / "pipecored_pager" / "__init__.py").write_text(PLUGIN, encoding="utf-8")
    target = tmp_path / "pager-site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture
def pager() -> Iterator[FakeServer]:
    with FakeServer(lambda request: Response(status_code=202)) as server:
        yield server


def _calls(pager: FakeServer, path: str) -> list[dict[str, str]]:
    return [json.loads(r.body) for r in pager.requests if r.path == path]


def _reloads(daemon: Daemon) -> float:
    for line in httpx.get(f"{daemon.url}/metrics").text.splitlines():
        if line.startswith("pipecore_config_reloads_total "):
            return float(line.split()[1])
    raise AssertionError("no pipecore_config_reloads_total")


def test_a_third_party_receiver_gets_its_plugin_settings_and_their_reload(
    tmp_path: Path,
    config_dir: ConfigDir,
    fake_gateway: HttpJsonGateway,
    daemon_factory: Callable[..., Daemon],
    httpjson_site: Path,
    pager_site: Path,
    pager: FakeServer,
) -> None:
    settings = default_daemon_settings(
        tmp_path / "pipecored.db",
        maxAttempts=100,
        circuit={"failureThreshold": 2, "cooldown": "1s"},
    )
    settings["plugins"] = {"pager": {"url": f"{pager.url}/first", "routingKey": "rk-first"}}
    config_dir.write_daemon(settings)
    path = os.pathsep.join([str(pager_site), str(httpjson_site)])
    daemon = daemon_factory(config_dir.path, env={"PYTHONPATH": path}).start()

    fake_gateway.fail_next(503, times=10_000)
    with daemon.client(ACME) as client:
        sent = client.post("/messaging/send/sms", json={"to": "+34600111222", "body": "hola"})
        assert sent.status_code == 202, sent.text
    first = wait_until(lambda: _calls(pager, "/first"), timeout=10)
    assert first == [
        {"routingKey": "rk-first", "action": "trigger", "dedupKey": "acme/sms/httpjson"}
    ]

    # The operator moves the pager: the next alert goes by the new settings, no restart.
    before = _reloads(daemon)
    settings["plugins"] = {"pager": {"url": f"{pager.url}/second", "routingKey": "rk-ñ-🚨"}}
    config_dir.write_daemon(settings)
    wait_until(lambda: _reloads(daemon) > before, timeout=10)
    fake_gateway.failures.clear()  # the provider recovers: the trial call closes the circuit

    second = wait_until(lambda: _calls(pager, "/second"), timeout=10)
    assert second == [
        {"routingKey": "rk-ñ-🚨", "action": "resolve", "dedupKey": "acme/sms/httpjson"}
    ]
    assert _calls(pager, "/first") == first
    metrics = httpx.get(f"{daemon.url}/metrics").text
    assert 'pipecore_alerts_total{receiver="pager",result="sent"} 2.0' in metrics
    assert daemon.stop() == 0
    # Nothing was left firing at the stop, so nothing more reached the pager.
    assert [r.path for r in pager.requests] == ["/first", "/second"]
