"""Real Prometheus and Alertmanager processes on loopback ports, with their data in a temp dir.

The binaries come from the Debian packages ``prometheus`` (prometheus, promtool) and
``prometheus-alertmanager``; CI installs them (.ci/run). A missing binary fails the test: these
tests prove the shipped rules, dashboard and alerts, and a skip would hide that nothing was
proven.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT, free_port

MONITORING = ROOT / "monitoring"
RULES = MONITORING / "prometheus" / "rules.yml"
RULES_TEST = MONITORING / "prometheus" / "rules_test.yml"
DASHBOARD = MONITORING / "grafana" / "pipecore.json"


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: these tests need the Debian packages prometheus and "
            "prometheus-alertmanager (apt-get install -y prometheus prometheus-alertmanager; "
            ".ci/run does it)",
            pytrace=False,
        )
    return path


@dataclass
class Service:
    """One server process; ``stop()`` ends it, and the fixture that made it always calls it."""

    name: str
    command: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> Service:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=5)
        response.raise_for_status()
        return response.json()


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


@pytest.fixture
def prometheus_factory(tmp_path: Path, services: list[Service]) -> Callable[[str], Service]:
    """``make(target)``: Prometheus scraping ``target`` (host:port) as job ``pipecored`` every
    second, evaluating the shipped rules every second."""
    prometheus = binary("prometheus")

    def make(target: str) -> Service:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": "1s",
                        "scrape_timeout": "1s",
                        "evaluation_interval": "1s",
                    },
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {"job_name": "pipecored", "static_configs": [{"targets": [target]}]}
                    ],
                }
            ),
            encoding="utf-8",
        )
        service = Service(
            "prometheus",
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            port,
            tmp_path / "prometheus.log",
        )
        services.append(service)
        return service.start()

    return make


@pytest.fixture
def alertmanager(tmp_path: Path, services: list[Service]) -> Service:
    """Alertmanager with clustering off and a receiver that notifies nobody: the test reads its
    alerts through the API."""
    command = binary("prometheus-alertmanager")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        yaml.safe_dump({"route": {"receiver": "nobody"}, "receivers": [{"name": "nobody"}]}),
        encoding="utf-8",
    )
    service = Service(
        "alertmanager",
        [
            command,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        port,
        tmp_path / "alertmanager.log",
    )
    services.append(service)
    return service.start()
