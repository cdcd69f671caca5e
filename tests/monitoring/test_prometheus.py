"""A real Prometheus scrapes a real daemon with the shipped rules loaded: per-tenant series arrive,
every rule evaluates, and every expression of the shipped Grafana dashboard parses and returns
data."""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from starlette.responses import Response

from pipecored.metrics import Metrics
from tests.conftest import (
    HTTPJSON_SIGNING,
    ConfigDir,
    Daemon,
    default_daemon_settings,
    httpjson_channel,
    wait_until,
)
from tests.fakes.httpjson import HttpJsonGateway, signed_events
from tests.fakes.server import FakeServer
from tests.monitoring.conftest import DASHBOARD, RULES, Service

ACME = "acme-key-0123456789"
GLOBEX = "globex-key-0123456789"
# What Grafana would put in place of its variables for a recent time range.
GRAFANA_VARIABLES = {"$tenant": "acme", "$__rate_interval": "30s", "$__interval": "5s"}


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            found.append((f"{panel['title']} [{target['refId']}]", target["expr"]))
    return found


def grafana_substitute(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


@pytest.fixture
def alert_webhook() -> Iterator[FakeServer]:
    with FakeServer(lambda request: Response(status_code=204)) as server:
        yield server


PLATFORM_SECRET = "whsec_" + base64.b64encode(b"acme-platform-signing-key-000001").decode()


def _wait_message(client: httpx.Client, message_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        m: dict[str, Any] = client.get(f"/messaging/messages/{message_id}").json()
        return m if m["status"] in ("sent", "delivered", "failed") else None

    result: dict[str, Any] = wait_until(done, timeout=10)
    return result


def _send(daemon: Daemon, key: str, channel: str) -> dict[str, Any]:
    body: dict[str, Any] = {"to": "+34600111222", "body": "hola"}
    if channel == "email":
        body = {"to": "ops@example.com", "subject": "hola", "htmlContent": "<p>hola</p>"}
    with daemon.client(key) as client:
        r = client.post(f"/messaging/send/{channel}", json=body)
        assert r.status_code == 202, r.text
        return _wait_message(client, r.json()["id"])


def _traffic_round(daemon: Daemon, gateway: HttpJsonGateway, config_dir: ConfigDir) -> None:
    """Everything a panel shows: sends on every channel, a failed message, failovers with a
    circuit opening and closing (an alert fired and resolved), callbacks good and forged, a
    config reload."""
    for key, channel in ((ACME, "sms"), (ACME, "email"), (GLOBEX, "whatsapp")):
        assert _send(daemon, key, channel)["status"] == "sent"
    gateway.fail_next(400)  # permanent, and email has no fallback: the message fails
    assert _send(daemon, ACME, "email")["status"] == "failed"
    gateway.fail_next(503, times=2)  # maxAttempts 1: each moves to console; the circuit opens
    for _ in range(2):
        assert _send(daemon, ACME, "sms")["provider"] == "console"
    time.sleep(1.1)  # the cooldown: the next sms is the trial call, which closes the circuit
    assert _send(daemon, ACME, "sms")["provider"] == "httpjson"

    url = f"{daemon.url}/messaging/webhook/sms?tenant_id=acme&provider=httpjson"
    body, headers = signed_events(HTTPJSON_SIGNING, [{"id": "hj-1", "status": "delivered"}])
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    forged = {**headers, "X-Signature": "0" * 64}
    assert httpx.post(url, content=body, headers=forged).status_code == 403
    config_dir.write_tenant("globex", _globex(gateway))  # rewritten: the daemon reloads it


def _globex(gateway: HttpJsonGateway) -> dict[str, Any]:
    return {
        "name": "Globex",
        "apiKeys": [GLOBEX],
        "channels": {"whatsapp": httpjson_channel(gateway.url)},
    }


def _query(prometheus: Service, expr: str) -> list[dict[str, Any]]:
    answer = prometheus.get("/api/v1/query", query=expr)
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


def test_prometheus_scrapes_the_daemon_and_every_dashboard_panel_has_data(
    tmp_path: Path,
    config_dir: ConfigDir,
    fake_gateway: HttpJsonGateway,
    daemon_factory: Callable[..., Daemon],
    prometheus_factory: Callable[[str], Service],
    alert_webhook: FakeServer,
) -> None:
    settings = default_daemon_settings(
        tmp_path / "pipecored.db",
        maxAttempts=1,
        circuit={"failureThreshold": 2, "cooldown": "1s"},
    )
    settings["alerts"] = {"webhooks": [{"url": alert_webhook.url}]}
    config_dir.write_daemon(settings)
    acme_sms = {**httpjson_channel(fake_gateway.url), "fallbacks": [{"provider": "console"}]}
    # email split between two arms (for the experiment panel); events to a platform endpoint
    arm = httpjson_channel(fake_gateway.url)
    # arm b stopped (weight 0): every email still goes through httpjson, whose scripted 400
    # fails one
    arms = [{**arm, "name": "a", "weight": 1}, {"name": "b", "weight": 0, "provider": "console"}]
    config_dir.write_tenant(
        "acme",
        {
            "name": "Acme",
            "apiKeys": [ACME],
            "channels": {"sms": acme_sms, "email": {"experiment": {"name": "split", "arms": arms}}},
            "webhooks": [{"url": f"{alert_webhook.url}/events", "secret": PLATFORM_SECRET}],
        },
    )
    daemon = daemon_factory(config_dir.path)
    # Prometheus first: its service discovery hands a new target to the scraper only after ~5 s,
    # time the daemon's start and the first round of traffic use.
    prometheus = prometheus_factory(f"127.0.0.1:{daemon.port}")
    daemon.start()

    # Two rounds with a scrape between them, so that every counter moves inside the rate window.
    accepted = 'pipecore_messages_accepted_total{tenant="acme", channel="sms"}'
    _traffic_round(daemon, fake_gateway, config_dir)
    wait_until(lambda: _query(prometheus, f"{accepted} == 4"), timeout=15)
    _traffic_round(daemon, fake_gateway, config_dir)
    # Each round fired an alert and resolved it; the webhook receiver sends in the background.
    sent = 'pipecore_alerts_total{receiver="webhook",result="sent"} 4.0'
    wait_until(lambda: sent in httpx.get(f"{daemon.url}/metrics").text)

    wait_until(lambda: _query(prometheus, f"{accepted} == 8"))
    wait_until(
        lambda: _query(prometheus, 'pipecore_alerts_total{receiver="webhook",result="sent"} == 4')
    )

    per_tenant = {
        s["metric"]["tenant"]: float(s["value"][1])
        for s in _query(prometheus, "sum by (tenant) (pipecore_messages_accepted_total)")
    }
    assert per_tenant == {"acme": 12.0, "globex": 2.0}
    [series] = _query(prometheus, accepted)
    assert series["metric"]["job"] == "pipecored"
    assert series["metric"]["instance"] == f"127.0.0.1:{daemon.port}"
    failed = 'pipecore_messages_total{tenant="acme", channel="email", status="failed"}'
    assert [float(s["value"][1]) for s in _query(prometheus, failed)] == [2.0]

    # The dashboard's $tenant variable: label_values(pipecore_messages_accepted_total, tenant).
    tenants = prometheus.get(
        "/api/v1/label/tenant/values", **{"match[]": "pipecore_messages_accepted_total"}
    )
    assert tenants["data"] == ["acme", "globex"]

    empty = []
    for title, expr in dashboard_expressions():
        result = _query(prometheus, grafana_substitute(expr))
        if not _finite(result):
            empty.append((title, expr, result))
    assert not empty, f"panels without data: {empty}"

    # No <name>_created series beside the counters and histograms: nothing reads them.
    assert _query(prometheus, '{__name__=~".+_created", job="pipecored"}') == []

    # Every shipped rule is loaded and evaluates without error.
    shipped = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]

    def evaluated() -> list[dict[str, Any]] | None:
        groups = prometheus.get("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if all(r["health"] == "ok" for r in rules) else None

    rules = wait_until(evaluated, timeout=10)
    assert sorted(r["name"] for r in rules) == sorted(shipped)
    # The daemon is up and nothing lasted long enough for a rule to fire.
    assert not [r for r in rules if r["state"] == "firing"]


def test_the_exposition_has_no_created_series() -> None:
    """prometheus-client would add a <name>_created gauge per counter and histogram series
    (23 on a small daemon, each one more series per tenant) that no rule or panel reads."""
    metrics = Metrics(CollectorRegistry())
    metrics.messages_accepted.labels("acme", "sms").inc()
    metrics.messages.labels("acme", "sms", "httpjson", "sent").inc()
    metrics.provider_duration.labels("sms", "httpjson").observe(0.1)
    metrics.alerts.labels("webhook", "sent").inc()
    metrics.config_reloaded(True, 1.0)
    text = generate_latest(metrics.registry).decode()
    assert "pipecore_messages_accepted_total" in text
    assert [line for line in text.splitlines() if "_created" in line] == []
