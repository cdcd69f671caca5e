"""POST /messaging/webhook/{channel}: signed status events and inbound messages."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import httpx
import pytest

from tests.api.conftest import (
    ACME_KEY,
    GLOBEX_KEY,
    accepted_id,
    assert_error,
    message,
    post_events,
    wait_status,
)
from tests.conftest import HTTPJSON_SIGNING, auth, eventually
from tests.fakes.httpjson import HttpJsonGateway, signed_events

ACME_SMS = "tenant_id=acme&provider=httpjson"


async def sent_message(client: httpx.AsyncClient) -> dict[str, Any]:
    message_id = await accepted_id(client, "sms")
    sent: dict[str, Any] = await wait_status(client, message_id, "sent")
    return sent


def webhook_count(metrics: str, tenant: str, result: str) -> float:
    pattern = (
        rf'^pipecore_webhooks_total\{{provider="httpjson",result="{result}",tenant="{tenant}"\}} '
        r"(\S+)$"
    )
    match = re.search(pattern, metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_status_event_moves_a_message_forward_and_never_back(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway
) -> None:
    sent = await sent_message(client)
    provider_id = sent["providerMessageId"]

    delivered = await post_events(client, [{"id": provider_id, "status": "delivered"}])
    assert delivered.status_code == 200, delivered.text
    assert (await message(client, sent["id"]))["status"] == "delivered"

    late_sent = await post_events(client, [{"id": provider_id, "status": "sent"}])
    assert late_sent.status_code == 200, late_sent.text
    assert (await message(client, sent["id"]))["status"] == "delivered"

    read = await post_events(client, [{"id": provider_id, "status": "read"}])
    assert read.status_code == 200, read.text
    assert (await message(client, sent["id"]))["status"] == "read"

    late_delivered = await post_events(client, [{"id": provider_id, "status": "delivered"}])
    assert late_delivered.status_code == 200, late_delivered.text
    assert (await message(client, sent["id"]))["status"] == "read"


async def test_failed_event_records_the_error(client: httpx.AsyncClient) -> None:
    sent = await sent_message(client)
    events = [
        {
            "id": sent["providerMessageId"],
            "status": "failed",
            "errorCode": "30006",
            "errorMessage": "Landline or unreachable carrier",
        }
    ]

    response = await post_events(client, events)

    assert response.status_code == 200, response.text
    failed = await message(client, sent["id"])
    assert failed["status"] == "failed"
    assert failed["errorCode"] == "30006"
    assert failed["errorMessage"] == "Landline or unreachable carrier"


@pytest.mark.parametrize(
    ("secret", "headers"),
    [
        pytest.param("forged-secret", None, id="forged"),
        pytest.param(HTTPJSON_SIGNING, {"X-Signature": "0" * 64}, id="zeros"),
        pytest.param(HTTPJSON_SIGNING, {"X-Signature": ""}, id="empty-signature"),
        pytest.param(HTTPJSON_SIGNING, {"X-Signature": "not hex at all"}, id="not-hex"),
    ],
)
async def test_a_bad_signature_is_403_and_changes_nothing(
    client: httpx.AsyncClient, secret: str, headers: dict[str, str] | None
) -> None:
    sent = await sent_message(client)
    body, signed = signed_events(secret, [{"id": sent["providerMessageId"], "status": "delivered"}])

    response = await client.post(
        f"/messaging/webhook/sms?{ACME_SMS}", content=body, headers={**signed, **(headers or {})}
    )

    assert_error(response, 403, "bad_signature")
    assert (await message(client, sent["id"]))["status"] == "sent"


async def test_a_missing_signature_is_403(client: httpx.AsyncClient) -> None:
    body, _ = signed_events(HTTPJSON_SIGNING, [{"id": "hj-1", "status": "delivered"}])
    response = await client.post(
        f"/messaging/webhook/sms?{ACME_SMS}",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 403, "bad_signature")


async def test_a_signature_with_another_tenants_secret_is_403(
    client: httpx.AsyncClient, gateway: Any
) -> None:
    # globex has its own signing secret; acme's callback must not verify with it
    path = gateway.config_dir / "tenants" / "globex.yaml"
    path.write_text(path.read_text().replace(HTTPJSON_SIGNING, "globex-signing-secret-0123"))
    entry = gateway.registry.reload_tenant("globex")
    assert entry is not None and entry.error is None
    sent = await sent_message(client)
    events = [{"id": sent["providerMessageId"], "status": "delivered"}]

    as_acme = await post_events(client, events, secret="globex-signing-secret-0123")

    assert_error(as_acme, 403, "bad_signature")
    assert (await message(client, sent["id"]))["status"] == "sent"


async def test_a_status_event_for_another_tenants_message_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    globex_id = await accepted_id(client, "whatsapp", key=GLOBEX_KEY)
    globex = await wait_status(client, globex_id, "sent")

    # signed correctly for acme (both use the same secret here), naming globex's provider id
    response = await post_events(client, [{"id": globex["providerMessageId"], "status": "read"}])

    assert response.status_code == 200, response.text
    assert (await message(client, globex_id))["status"] == "sent"


async def test_inbound_message_is_logged(client: httpx.AsyncClient) -> None:
    text = "¡Hola! ¿Tenéis mesa para 4 mañana? 🍷\nGracias"
    event = {"id": "hj-in-1", "from": "+34600999888", "to": "+34911222333", "body": text}

    response = await post_events(client, [event])
    again = await post_events(client, [event])  # a provider's retry of the same callback

    assert response.status_code == again.status_code == 200, (response.text, again.text)
    page = await client.get("/messaging/logs/acme?direction=inbound", headers=auth(ACME_KEY))
    [item] = page.json()["items"]
    assert item["direction"] == "inbound"
    assert item["status"] == "received"
    assert item["channel"] == "sms"
    assert item["provider"] == "httpjson"
    assert item["from"] == "+34600999888"
    assert item["to"] in ("+34911222333", ["+34911222333"])
    assert item["body"] == text
    assert item["providerMessageId"] == "hj-in-1"
    globex = await client.get("/messaging/logs/globex", headers=auth(GLOBEX_KEY))
    assert globex.json()["items"] == []


@pytest.mark.parametrize(
    ("channel", "query", "status", "code"),
    [
        pytest.param("sms", "tenant_id=initech&provider=httpjson", 404, "tenant_not_found", id="t"),
        pytest.param("sms", "provider=httpjson", 422, "validation_error", id="no-tenant"),
        pytest.param("sms", "tenant_id=&provider=httpjson", 422, "validation_error", id="empty"),
        pytest.param("fax", ACME_SMS, 404, "unknown_channel", id="unknown-channel"),
        pytest.param(
            "sms", "tenant_id=globex&provider=httpjson", 404, "channel_not_configured", id="ch"
        ),
        pytest.param(
            "sms", "tenant_id=acme&provider=twilio", 404, "provider_not_configured", id="provider"
        ),
        pytest.param(
            "sms", "tenant_id=acme&provider=pigeon", 404, "provider_not_configured", id="unknown"
        ),
    ],
)
async def test_webhook_routing_errors(
    client: httpx.AsyncClient, channel: str, query: str, status: int, code: str
) -> None:
    response = await post_events(
        client, [{"id": "hj-1", "status": "delivered"}], channel=channel, query=query
    )
    error = assert_error(response, status, code)
    if status == 422:
        assert "tenant_id" in error["message"]


async def test_provider_defaults_to_the_channels_provider(client: httpx.AsyncClient) -> None:
    sent = await sent_message(client)
    response = await post_events(
        client, [{"id": sent["providerMessageId"], "status": "delivered"}], query="tenant_id=acme"
    )
    assert response.status_code == 200, response.text
    assert (await message(client, sent["id"]))["status"] == "delivered"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b'{"events": 5}', id="events-not-a-list"),
        pytest.param(b'{"events": [{"from": "+34600999888"}]}', id="inbound-without-body"),
    ],
)
async def test_signed_but_malformed_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    signature = hmac.new(HTTPJSON_SIGNING.encode(), raw, hashlib.sha256).hexdigest()
    response = await client.post(
        f"/messaging/webhook/sms?{ACME_SMS}",
        content=raw,
        headers={"Content-Type": "application/json", "X-Signature": signature},
    )
    assert_error(response, 400, "invalid_webhook")


async def test_webhook_metrics_count_results(client: httpx.AsyncClient) -> None:
    sent = await sent_message(client)
    events = [{"id": sent["providerMessageId"], "status": "delivered"}]

    for _ in range(2):
        assert (await post_events(client, events)).status_code == 200
    assert (await post_events(client, events, secret="forged")).status_code == 403

    async def counted() -> str | None:
        text = (await client.get("/metrics")).text
        return text if webhook_count(text, "acme", "accepted") == 2 else None

    metrics = await eventually(counted)
    assert webhook_count(metrics, "acme", "bad_signature") == 1
    assert webhook_count(metrics, "acme", "invalid") == 0


def messages_total(metrics: str, status: str) -> float:
    pattern = (
        r'^pipecore_messages_total\{channel="sms",provider="httpjson",'
        rf'status="{status}",tenant="acme"\}} (\S+)$'
    )
    match = re.search(pattern, metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_repeated_or_late_status_callbacks_count_once(client: httpx.AsyncClient) -> None:
    # Providers retry callbacks and send them out of order; pipecore_messages_total counts
    # messages reaching a status, so only the callback that moves the message counts.
    sent = await sent_message(client)
    provider_id = sent["providerMessageId"]
    for status in ("delivered", "delivered", "sent"):
        response = await post_events(client, [{"id": provider_id, "status": status}])
        assert response.status_code == 200, response.text

    metrics = (await client.get("/metrics")).text
    assert (await message(client, sent["id"]))["status"] == "delivered"
    assert (messages_total(metrics, "sent"), messages_total(metrics, "delivered")) == (1, 1), (
        "a repeated 'delivered' and a late 'sent' callback moved nothing and must not count"
    )


async def test_a_callback_before_the_providers_answer_is_counted_when_applied(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway
) -> None:
    # The callback names a provider message id nobody knows yet: it waits in the store and
    # moves the message when the provider's answer is written, and is counted then.
    fake_gateway.delay = 0.5
    message_id = await accepted_id(client, "sms")
    await eventually(lambda: fake_gateway.sent or None)
    early = await post_events(client, [{"id": "hj-1", "status": "delivered"}])
    assert early.status_code == 200, early.text
    assert (await message(client, message_id))["status"] == "sending"

    await wait_status(client, message_id, "delivered")
    metrics = (await client.get("/metrics")).text
    assert (messages_total(metrics, "sent"), messages_total(metrics, "delivered")) == (1, 1)
