"""A real daemon raises PipecoreProviderDown in a real Alertmanager when a tenant's provider
fails, and resolves it there when the provider recovers."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ConfigDir, Daemon, default_daemon_settings, wait_until
from tests.fakes.httpjson import HttpJsonGateway
from tests.monitoring.conftest import Service

ACME = "acme-key-0123456789"


def _provider_down(alertmanager: Service) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = alertmanager.get(
        "/api/v2/alerts", filter='alertname="PipecoreProviderDown"'
    )
    return alerts


def test_an_open_circuit_fires_in_alertmanager_and_its_closing_resolves_it(
    tmp_path: Path,
    config_dir: ConfigDir,
    fake_gateway: HttpJsonGateway,
    daemon_factory: Callable[..., Daemon],
    alertmanager: Service,
) -> None:
    settings = default_daemon_settings(
        tmp_path / "pipecored.db",
        maxAttempts=100,
        circuit={"failureThreshold": 2, "cooldown": "1s"},
    )
    settings["alerts"] = {"alertmanager": {"url": alertmanager.url}}
    config_dir.write_daemon(settings)
    daemon = daemon_factory(config_dir.path).start()

    fake_gateway.fail_next(503, times=10_000)
    before = time.time()
    with daemon.client(ACME) as client:
        sent = client.post("/messaging/send/sms", json={"to": "+34600111222", "body": "hola"})
        assert sent.status_code == 202, sent.text
        message_id = sent.json()["id"]

        [alert] = wait_until(lambda: _provider_down(alertmanager), timeout=10)
        # acme's sms channel has no fallback: nothing else can carry its messages.
        assert alert["labels"] == {
            "alertname": "PipecoreProviderDown",
            "tenant": "acme",
            "channel": "sms",
            "provider": "httpjson",
            "severity": "critical",
        }
        assert alert["status"]["state"] == "active"
        assert alert["annotations"]["summary"] == "httpjson is down for tenant acme (sms)"
        assert "http_503: scripted 503" in alert["annotations"]["description"]
        starts = datetime.fromisoformat(alert["startsAt"]).timestamp()
        assert before - 1 <= starts <= time.time()
        assert datetime.fromisoformat(alert["endsAt"]).timestamp() > time.time()

        fake_gateway.failures.clear()  # the provider recovers: the next trial call succeeds
        wait_until(lambda: not _provider_down(alertmanager), timeout=10)
        message = client.get(f"/messaging/messages/{message_id}").json()
        assert message["status"] == "sent"

    metrics = httpx.get(f"{daemon.url}/metrics").text
    # One firing and one resolved; the re-send comes only after a minute.
    assert 'pipecore_alerts_total{receiver="alertmanager",result="sent"} 2.0' in metrics
    assert 'receiver="alertmanager",result="failed"' not in metrics
    assert daemon.stop() == 0
