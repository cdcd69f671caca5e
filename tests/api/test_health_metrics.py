"""GET /healthz, GET /readyz and GET /metrics."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipecored.errors import StoreError
from pipecored.gateway import Gateway
from tests.api.conftest import accepted_id, post_events, wait_status
from tests.fakes.httpjson import HttpJsonGateway

# SPEC section 5: name -> (type, label names)
SPEC_METRICS = {
    "pipecore_messages_accepted_total": ("counter", {"tenant", "channel"}),
    "pipecore_messages_total": ("counter", {"tenant", "channel", "provider", "status"}),
    "pipecore_provider_requests_total": (
        "counter",
        {"tenant", "channel", "provider", "outcome"},
    ),
    "pipecore_provider_request_duration_seconds": ("histogram", {"channel", "provider"}),
    "pipecore_provider_up": ("gauge", {"tenant", "channel", "provider"}),
    "pipecore_failovers_total": (
        "counter",
        {"tenant", "channel", "from_provider", "to_provider"},
    ),
    "pipecore_queue_depth": ("gauge", set()),
    "pipecore_webhooks_total": ("counter", {"tenant", "provider", "result"}),
    "pipecore_config_reloads_total": ("counter", set()),
    "pipecore_config_reload_errors_total": ("counter", set()),
}


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"config": True, "store": True, "delivery": True},
    }


async def test_readyz_is_503_when_the_store_is_unreachable(
    client: httpx.AsyncClient, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down() -> None:
        raise StoreError("database is locked")

    monkeypatch.setattr(gateway.store, "ping", down)
    response = await client.get("/readyz")
    assert response.status_code == 503, response.text
    assert response.json()["checks"] == {"config": True, "store": False, "delivery": True}


async def test_readyz_is_503_while_shutting_down(
    client: httpx.AsyncClient, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway, "accepting", False)
    assert (await client.get("/readyz")).status_code == 503


def families(text: str) -> dict[str, Any]:
    found = {}
    for family in text_string_to_metric_families(text):
        # the parser names a counter without its _total suffix
        name = family.name + "_total" if family.type == "counter" else family.name
        found[name] = family
    return found


async def test_metrics_after_a_send(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway
) -> None:
    message_id = await accepted_id(client, "sms")
    sent = await wait_status(client, message_id, "sent")
    await post_events(client, [{"id": sent["providerMessageId"], "status": "delivered"}])

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'pipecore_messages_accepted_total{channel="sms",tenant="acme"} 1.0' in text
    assert (
        'pipecore_provider_requests_total{channel="sms",outcome="success",provider="httpjson",'
        'tenant="acme"} 1.0' in text
    )
    assert (
        'pipecore_messages_total{channel="sms",provider="httpjson",status="sent",tenant="acme"} 1.0'
        in text
    )
    assert (
        'pipecore_webhooks_total{provider="httpjson",result="accepted",tenant="acme"} 1.0' in text
    )
    assert (
        'pipecore_provider_request_duration_seconds_count{channel="sms",provider="httpjson"}'
        in (text)
    )
    assert "pipecore_queue_depth " in text
    found = families(text)
    for name, (kind, labels) in SPEC_METRICS.items():
        assert name in found, f"{name} missing from /metrics"
        assert found[name].type == kind, name
        for sample in found[name].samples:
            sample_labels = set(sample.labels) - {"le"}
            assert sample_labels == labels, (name, sample.labels)


async def test_metrics_without_traffic_list_the_spec_names(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    for name, (kind, _labels) in SPEC_METRICS.items():
        base = name.removesuffix("_total") if kind == "counter" else name
        assert f"# TYPE {base}" in text or f"# TYPE {name}" in text, name


async def test_config_reload_metrics(client: httpx.AsyncClient, gateway: Gateway) -> None:
    before = families((await client.get("/metrics")).text)
    errors_before = before["pipecore_config_reload_errors_total"].samples[0].value
    (gateway.config_dir / "tenants" / "acme.yaml").write_text("name: [broken\n")
    gateway.registry.reload_tenant("acme")

    after = families((await client.get("/metrics")).text)

    assert after["pipecore_config_reload_errors_total"].samples[0].value == errors_before + 1
