"""The shipped Prometheus rules pass promtool's checks and unit tests, every rule has a test that
fires it and one that does not, and the dashboard has what docs/monitoring.md promises."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from pipecored.metrics import Metrics
from tests.conftest import ROOT
from tests.monitoring.conftest import DASHBOARD, RULES, RULES_TEST, binary


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=RULES.parent,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("check", "rules", RULES.name), id="check-rules"),
        pytest.param(("test", "rules", RULES_TEST.name), id="test-rules"),
    ],
)
def test_promtool_passes(args: tuple[str, ...]) -> None:
    result = _promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _shipped_alerts() -> list[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def test_every_rule_is_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text(encoding="utf-8"))["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    for name in _shipped_alerts():
        assert name in fires, f"{name}: no test where it fires"
        assert name in quiet, f"{name}: no test where it stays quiet"
    # Besides the "before for: has elapsed" cases, each test has a neighbour series that must not
    # fire: an expected alert list naming exactly one label set proves the other stayed quiet.
    for case in cases:
        assert len(case.get("exp_alerts") or []) <= 1, case


def test_every_alert_is_documented() -> None:
    doc = (ROOT / "docs" / "monitoring.md").read_text(encoding="utf-8")
    for name in [*_shipped_alerts(), "PipecoreProviderDown"]:
        assert f"### {name}" in doc, name


def test_every_metric_is_documented_and_the_page_stands_alone() -> None:
    """docs/monitoring.md is the operator's reference: it lists what /metrics exports and cites
    no document outside the repository."""
    doc = (ROOT / "docs" / "monitoring.md").read_text(encoding="utf-8")
    suffix = {"counter": "_total", "info": "_info"}
    exported = [
        family.name + suffix.get(family.type, "")
        for family in Metrics(CollectorRegistry()).registry.collect()
        if family.name.startswith("pipecore")
    ]
    assert len(exported) >= 15
    assert [name for name in exported if f"`{name}`" not in doc] == []
    assert "SPEC" not in doc


def _dashboard() -> Any:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_the_dashboard_has_a_tenant_variable_over_accepted_messages() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    tenant = variables["tenant"]
    assert tenant["query"]["query"] == "label_values(pipecore_messages_accepted_total, tenant)"
    assert tenant["datasource"]["uid"] == "${datasource}"
    assert variables["datasource"]["query"] == "prometheus"


@pytest.mark.parametrize(
    ("title", "metric"),
    [
        pytest.param(
            "Accepted messages/s by channel", "pipecore_messages_accepted_total", id="accepted"
        ),
        pytest.param("Delivery success rate", "pipecore_messages_total", id="success-rate"),
        pytest.param("Failovers/s", "pipecore_failovers_total", id="failovers"),
        pytest.param(
            "Provider latency p95 (all tenants)",
            "pipecore_provider_request_duration_seconds_bucket",
            id="latency",
        ),
        pytest.param("Provider up", "pipecore_provider_up", id="provider-up"),
        pytest.param(
            "Queue depth and oldest message age", "pipecore_queue_oldest_age_seconds", id="queue"
        ),
        pytest.param("Webhook callbacks/s by result", "pipecore_webhooks_total", id="webhooks"),
        pytest.param("Config reloads", "pipecore_config_reloads_total", id="reloads"),
        pytest.param("Alerts sent to receivers", "pipecore_alerts_total", id="alerts"),
        pytest.param(
            "Events posted to platforms/s by endpoint and outcome",
            "pipecore_event_deliveries_total",
            id="events",
        ),
        pytest.param(
            "Events outbox: depth and oldest age",
            "pipecore_events_outbox_oldest_age_seconds",
            id="outbox",
        ),
        pytest.param(
            "Experiment arms: delivery rate",
            "pipecore_experiment_messages_total",
            id="experiments",
        ),
    ],
)
def test_the_dashboard_has_the_panel(title: str, metric: str) -> None:
    panels = {p["title"]: p for p in _dashboard()["panels"]}
    exprs = " ".join(t["expr"] for t in panels[title]["targets"])
    assert metric in exprs


def test_panels_filter_by_tenant_except_where_the_metric_has_no_tenant() -> None:
    untenanted = (
        "pipecore_provider_request_duration_seconds",
        "pipecore_queue_",
        "pipecore_config_",
        "pipecore_alerts_total",
        "pipecore_events_outbox_",
    )
    for panel in _dashboard()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            if not any(name in expr for name in untenanted):
                assert 'tenant=~"$tenant"' in expr, (panel["title"], expr)
