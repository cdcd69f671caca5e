"""GET /messaging/logs/{tenant} and GET /messaging/stats/{tenant}."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.conftest import (
    ACME_KEY,
    EMAIL,
    SMS,
    accepted_id,
    assert_error,
    post_events,
    wait_status,
)
from tests.conftest import ADMIN_KEY, auth
from tests.fakes.httpjson import HttpJsonGateway

LOG_FIELDS = {
    "id",
    "tenantId",
    "channel",
    "direction",
    "provider",
    "to",
    "from",
    "status",
    "attemptCount",
    "providerMessageId",
    "errorCode",
    "errorMessage",
    "createdAt",
    "updatedAt",
}


async def logs(client: httpx.AsyncClient, query: str = "", key: str = ACME_KEY) -> Any:
    response = await client.get(f"/messaging/logs/acme{query}", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


async def stats(client: httpx.AsyncClient, query: str = "") -> Any:
    response = await client.get(f"/messaging/stats/acme{query}", headers=auth(ACME_KEY))
    assert response.status_code == 200, response.text
    return response.json()


async def test_pages_newest_first_without_duplicates_or_gaps(client: httpx.AsyncClient) -> None:
    sent = [await accepted_id(client, "sms", body={**SMS, "body": f"n{i}"}) for i in range(7)]
    globex = await accepted_id(client, "whatsapp", key="globex-key-0123456789")

    first = await logs(client, "?limit=3")
    second = await logs(client, f"?limit=3&cursor={first['nextCursor']}")
    third = await logs(client, f"?limit=3&cursor={second['nextCursor']}")

    pages = [first, second, third]
    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    assert third["nextCursor"] is None
    assert first["nextCursor"] and second["nextCursor"]
    seen = [item["id"] for page in pages for item in page["items"]]
    assert seen == list(reversed(sent))
    assert globex not in seen
    assert all(set(item) == LOG_FIELDS for page in pages for item in page["items"])
    created = [item["createdAt"] for page in pages for item in page["items"]]
    assert created == sorted(created, reverse=True)


async def test_exactly_one_page_has_no_next_cursor(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await accepted_id(client, "sms")
    page = await logs(client, "?limit=3")
    assert len(page["items"]) == 3
    assert page["nextCursor"] is None


async def test_a_cursor_is_stable_while_new_messages_arrive(client: httpx.AsyncClient) -> None:
    old = [await accepted_id(client, "sms") for _ in range(4)]
    first = await logs(client, "?limit=2")
    newer = await accepted_id(client, "sms")

    second = await logs(client, f"?limit=2&cursor={first['nextCursor']}")

    assert [i["id"] for i in second["items"]] == [old[1], old[0]]
    assert newer not in [i["id"] for i in second["items"]]


async def test_default_limit_is_50(client: httpx.AsyncClient) -> None:
    for _ in range(51):
        await accepted_id(client, "sms")
    page = await logs(client)
    assert len(page["items"]) == 50
    assert page["nextCursor"] is not None


async def test_filters(client: httpx.AsyncClient, fake_gateway: HttpJsonGateway) -> None:
    fake_gateway.fail_next(400)
    failed = await accepted_id(client, "sms")
    await wait_status(client, failed, "failed")
    sms = await accepted_id(client, "sms")
    email = await accepted_id(client, "email", body=EMAIL)
    await wait_status(client, sms, "sent")
    await wait_status(client, email, "sent")
    inbound = await post_events(
        client, [{"from": "+34600999888", "to": "+34911222333", "body": "¿Abrís mañana?"}]
    )
    assert inbound.status_code == 200, inbound.text

    def ids(page: Any) -> list[str]:
        return [item["id"] for item in page["items"]]

    assert ids(await logs(client, "?channel=email")) == [email]
    assert ids(await logs(client, "?channel=sms&direction=outbound")) == [sms, failed]
    assert ids(await logs(client, "?status=failed")) == [failed]
    assert ids(await logs(client, "?status=sent")) == [email, sms]
    [received] = (await logs(client, "?direction=inbound"))["items"]
    assert received["status"] == "received"
    assert received["body"] == "¿Abrís mañana?"
    assert ids(await logs(client, "?status=received")) == [received["id"]]
    assert len((await logs(client, "?direction=outbound"))["items"]) == 3
    assert (await logs(client, "?channel=whatsapp"))["items"] == []
    assert (await logs(client, "?status=failed&channel=email"))["items"] == []


async def test_filters_and_pages_together(client: httpx.AsyncClient) -> None:
    emails = [await accepted_id(client, "email") for _ in range(3)]
    for _ in range(3):
        await accepted_id(client, "sms")
    first = await logs(client, "?channel=email&limit=2")
    second = await logs(client, f"?channel=email&limit=2&cursor={first['nextCursor']}")
    assert [i["id"] for i in first["items"] + second["items"]] == list(reversed(emails))
    assert second["nextCursor"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("?limit=0", "limit", id="limit-0"),
        pytest.param("?limit=501", "limit", id="limit-501"),
        pytest.param("?limit=-5", "limit", id="limit-negative"),
        pytest.param("?limit=ten", "limit", id="limit-word"),
        pytest.param("?limit=2.5", "limit", id="limit-fraction"),
        pytest.param("?limit=", "limit", id="limit-empty"),
        pytest.param("?cursor=bogus", "cursor", id="cursor-bogus"),
        pytest.param("?cursor=%25%25", "cursor", id="cursor-garbage"),
        pytest.param("?cursor=czEyYWI", "cursor", id="cursor-not-a-number"),
        pytest.param("?status=lost", "status", id="status"),
        pytest.param("?status=SENT", "status", id="status-case"),
        pytest.param("?channel=fax", "channel", id="channel"),
        pytest.param("?direction=sideways", "direction", id="direction"),
    ],
)
async def test_invalid_query_is_422_naming_it(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    response = await client.get(f"/messaging/logs/acme{query}", headers=auth(ACME_KEY))
    error = assert_error(response, 422, "validation_error", names=field)
    assert error["field"] == field


@pytest.mark.parametrize("route", ["logs", "stats"])
async def test_unknown_tenant_is_404(client: httpx.AsyncClient, route: str) -> None:
    response = await client.get(f"/messaging/{route}/initech", headers=auth(ADMIN_KEY))
    assert_error(response, 404, "tenant_not_found")


# -- stats -------------------------------------------------------------------------------------


async def test_stats_of_a_tenant_with_no_messages(client: httpx.AsyncClient) -> None:
    assert await stats(client) == {
        "tenantId": "acme",
        "total": 0,
        "byStatus": {},
        "byChannel": {},
        "byProvider": {},
        "deliveryRate": None,
        "latencyMs": {"p50": None, "p95": None, "p99": None},
    }


async def test_stats_counts(client: httpx.AsyncClient, fake_gateway: HttpJsonGateway) -> None:
    fake_gateway.fail_next(400)
    failed = await accepted_id(client, "sms")
    await wait_status(client, failed, "failed")
    sent = [await accepted_id(client, "sms") for _ in range(2)]
    email = await accepted_id(client, "email")
    for message_id in (*sent, email):
        await wait_status(client, message_id, "sent")
    delivered = await wait_status(client, sent[0], "sent")
    webhook = await post_events(
        client, [{"id": delivered["providerMessageId"], "status": "delivered"}]
    )
    assert webhook.status_code == 200, webhook.text
    await wait_status(client, sent[0], "delivered")
    # inbound messages are not counted
    await post_events(client, [{"from": "+34600999888", "to": "+34911222333", "body": "hi"}])
    await accepted_id(client, "sms", key="demo-key-0123456789")  # another tenant's

    result = await stats(client)

    assert result["tenantId"] == "acme"
    assert result["total"] == 4
    assert result["byStatus"] == {"failed": 1, "sent": 2, "delivered": 1}
    assert result["byChannel"] == {"sms": 3, "email": 1}
    assert result["byProvider"] == {"httpjson": 4}
    assert result["deliveryRate"] == pytest.approx(1 / 4)
    latency = result["latencyMs"]
    assert set(latency) == {"p50", "p95", "p99"}
    assert all(isinstance(latency[q], int | float) and latency[q] >= 0 for q in latency)
    assert latency["p50"] <= latency["p95"] <= latency["p99"]


@pytest.mark.parametrize(
    ("since", "counted"),
    [
        pytest.param(lambda now: now - timedelta(hours=1), True, id="an-hour-ago"),
        pytest.param(lambda now: now - timedelta(days=400), True, id="last-year"),
        pytest.param(lambda now: now + timedelta(minutes=5), False, id="future"),
        pytest.param(lambda now: (now - timedelta(hours=1)).date(), True, id="date-only"),
        pytest.param(
            lambda now: (now - timedelta(hours=1)).replace(tzinfo=None), True, id="naive-is-utc"
        ),
        pytest.param(
            lambda now: (now + timedelta(minutes=5)).astimezone(
                __import__("datetime").timezone(timedelta(hours=2))
            ),
            False,
            id="offset",
        ),
    ],
)
async def test_stats_since(client: httpx.AsyncClient, since: Any, counted: bool) -> None:
    await accepted_id(client, "sms")
    value = since(datetime.now(UTC)).isoformat()

    result = await client.get(
        "/messaging/stats/acme", params={"since": value}, headers=auth(ACME_KEY)
    )

    assert result.status_code == 200, result.text
    assert result.json()["total"] == (1 if counted else 0)


async def test_stats_since_z_suffix(client: httpx.AsyncClient) -> None:
    await accepted_id(client, "sms")
    result = await stats(client, "?since=2020-01-01T00:00:00Z")
    assert result["total"] == 1


@pytest.mark.parametrize(
    "since",
    [
        pytest.param("yesterday", id="word"),
        pytest.param("2024-13-01", id="month-13"),
        pytest.param("", id="empty"),
        pytest.param("1700000000", id="epoch-seconds"),
        pytest.param("2024-01-01T25:00:00Z", id="hour-25"),
    ],
)
async def test_stats_since_invalid_is_422(client: httpx.AsyncClient, since: str) -> None:
    response = await client.get(
        "/messaging/stats/acme", params={"since": since}, headers=auth(ACME_KEY)
    )
    error = assert_error(response, 422, "validation_error", names="since")
    assert error["field"] == "since"
