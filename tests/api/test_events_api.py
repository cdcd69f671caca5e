"""Events to the tenant's platform through the in-process app (SPEC section 8): posted to a real
receiver on loopback, signed (checked with the standardwebhooks package), retried with the same
webhook-id, and listed by GET /messaging/events."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from pipecored.config.model import TenantWebhookConfig
from pipecored.gateway import Gateway
from tests.api.conftest import (
    ACME_KEY,
    GLOBEX_KEY,
    accepted_id,
    assert_error,
    post_events,
    wait_status,
)
from tests.conftest import ADMIN_KEY, auth, eventually
from tests.fakes.httpjson import HttpJsonGateway

SECRET = "whsec_" + base64.b64encode(b"acme-platform-signing-key-0123456").decode()


@dataclass
class Receiver:
    """The tenant's platform: records every post, answering from ``answers`` first, then 204."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    def verified(self) -> list[dict[str, Any]]:
        """Every post whose signature verifies, as the event it carries (with its id)."""
        hook = Webhook(SECRET)
        events = []
        for headers, body in self.received:
            payload = hook.verify(body, headers)
            events.append({"id": headers["webhook-id"], **payload})
        return events


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def handle(request: web.Request) -> web.Response:
        state.received.append((dict(request.headers), await request.read()))
        return web.Response(status=state.answers.pop(0) if state.answers else 204)

    app = web.Application()
    app.router.add_post("/hooks", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/hooks"
    yield state
    await runner.cleanup()


def _subscribe(gateway: Gateway, url: str, events: tuple[str, ...] | None = None) -> None:
    tenant = gateway.registry.snapshot.tenant("acme")
    assert tenant is not None
    hook = TenantWebhookConfig(url=url, secret=SECRET, events=events)
    gateway.registry.replace_tenant("acme", tenant.model_copy(update={"webhooks": (hook,)}))


async def _events(client: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/messaging/events/acme{query}", headers=auth(ACME_KEY))
    assert response.status_code == 200, response.text
    assert SECRET not in response.text and SECRET.removeprefix("whsec_") not in response.text
    return dict(response.json())


async def test_sent_then_delivered_reach_the_platform_signed(
    client: httpx.AsyncClient, gateway: Gateway, receiver: Receiver
) -> None:
    _subscribe(gateway, receiver.url + "?token=platform-side-token")
    message_id = await accepted_id(client, "sms")
    sent = await wait_status(client, message_id, "sent")
    delivered = {"id": sent["providerMessageId"], "status": "delivered"}
    assert (await post_events(client, [delivered])).status_code in (200, 204)

    await eventually(lambda: len(receiver.received) >= 2)
    events = receiver.verified()
    assert [(e["type"], e["data"]["id"], e["data"]["status"]) for e in events] == [
        ("message.sent", message_id, "sent"),
        ("message.delivered", message_id, "delivered"),
    ]
    assert len({e["id"] for e in events}) == 2
    assert events[0]["data"]["to"] == "+34600111222"

    async def listed_delivered() -> Any:
        page = await _events(client)
        done = all(d["state"] == "delivered" for i in page["items"] for d in i["deliveries"])
        return page if done and len(page["items"]) == 2 else None

    page = await eventually(listed_delivered)
    assert [i["id"] for i in page["items"]] == [e["id"] for e in events]
    [delivery] = page["items"][0]["deliveries"]
    # the endpoint is shown without its query, where the platform keeps a token
    assert delivery["endpoint"] == receiver.url
    assert (delivery["attempts"], delivery["lastStatusCode"]) == (1, 204)
    assert "platform-side-token" not in str(page)
    assert page["hasMore"] is False and page["nextCursor"]
    newer = await _events(client, f"?after={page['nextCursor']}")
    assert (newer["items"], newer["nextCursor"]) == ([], page["nextCursor"])
    posted = gateway.metrics.registry.get_sample_value(
        "pipecore_event_deliveries_total",
        {"tenant": "acme", "endpoint": receiver.url, "outcome": "delivered"},
    )
    assert posted == 2.0


async def test_a_failed_post_is_retried_with_the_same_webhook_id(
    client: httpx.AsyncClient, gateway: Gateway, receiver: Receiver
) -> None:
    _subscribe(gateway, receiver.url)
    receiver.answers = [503]
    message_id = await accepted_id(client, "sms")

    # the schedule's first wait is 5 s (+-10%)
    await eventually(lambda: len(receiver.received) >= 2, timeout=30)
    first, second = receiver.verified()
    assert first == second  # the same event, the same id, the same body
    assert first["data"]["id"] == message_id
    assert receiver.received[0][1] == receiver.received[1][1]
    [item] = (await _events(client))["items"]
    assert item["deliveries"][0]["attempts"] == 2


async def test_an_endpoint_gets_only_what_it_subscribed_to(
    client: httpx.AsyncClient, gateway: Gateway, receiver: Receiver, fake_gateway: HttpJsonGateway
) -> None:
    _subscribe(gateway, receiver.url, events=("message.failed",))
    ok_id = await accepted_id(client, "sms")
    await wait_status(client, ok_id, "sent")
    fake_gateway.fail_next(400)
    failing = await accepted_id(client, "sms")
    await wait_status(client, failing, "failed")
    await eventually(lambda: len(receiver.received) >= 1)
    assert [e["type"] for e in receiver.verified()] == ["message.failed"]

    page = await _events(client)
    types = [i["type"] for i in page["items"]]
    assert "message.sent" in types  # stored for polling whatever the subscription
    subscribed = [i for i in page["items"] if i["deliveries"]]
    assert all(i["type"] == "message.failed" for i in subscribed)


async def test_events_api_errors(client: httpx.AsyncClient) -> None:
    other = await client.get("/messaging/events/acme", headers=auth(GLOBEX_KEY))
    assert_error(other, 403, "tenant_forbidden")
    unknown = await client.get("/messaging/events/nobody", headers=auth(ADMIN_KEY))
    assert_error(unknown, 404, "tenant_not_found")
    bad = await client.get("/messaging/events/acme?after=%%%", headers=auth(ACME_KEY))
    assert_error(bad, 422, "validation_error", names="after")
    limit = await client.get("/messaging/events/acme?limit=0", headers=auth(ACME_KEY))
    assert_error(limit, 422, "validation_error", names="limit")


async def test_a_dead_endpoint_does_not_hold_back_delivery(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    # nothing listens there: every post fails at once, every message is still delivered
    _subscribe(gateway, "http://127.0.0.1:9/hooks")
    ids = [await accepted_id(client, "sms") for _ in range(10)]
    for message_id in ids:
        await wait_status(client, message_id, "sent")

    async def all_tried() -> bool:
        items = (await _events(client))["items"]
        return len(items) == 10 and all(i["deliveries"][0]["attempts"] >= 1 for i in items)

    await eventually(all_tried)
    item = (await _events(client))["items"][0]
    assert item["deliveries"][0]["state"] == "pending"
    assert item["deliveries"][0]["lastError"].startswith("ConnectError")
    body = orjson.dumps(item)
    assert SECRET.encode() not in body


async def test_the_config_api_shows_endpoints_masked_and_the_keywords_in_force(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    _subscribe(gateway, "https://app.example/hooks?token=abc123", events=("message.failed",))
    response = await client.get("/messaging/config/acme", headers=auth(ACME_KEY))
    assert response.status_code == 200, response.text
    view = response.json()
    [hook] = view["webhooks"]
    assert hook["url"] == "https://app.example/hooks"
    assert hook["events"] == ["message.failed"]
    assert hook["secret"].startswith("****") and hook["secret"] != SECRET
    assert SECRET not in response.text and "abc123" not in response.text
    assert "BAJA" in view["optOut"]["stop"] and "ALTA" in view["optOut"]["start"]
