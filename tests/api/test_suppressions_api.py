"""Suppressions through the API (SPEC section 9): the 422 on a send, opt-out replies, and the
list/add/remove routes with their errors."""

from __future__ import annotations

import httpx
import pytest

from pipecored.gateway import Gateway
from tests.api.conftest import ACME_KEY, EMAIL, GLOBEX_KEY, SMS, assert_error, post_events, send
from tests.conftest import ADMIN_KEY, auth

PHONE = SMS["to"]


async def _suppress(
    client: httpx.AsyncClient, body: dict[str, object], key: str = ACME_KEY
) -> httpx.Response:
    return await client.post("/messaging/suppressions/acme", json=body, headers=auth(key))


async def _listed(client: httpx.AsyncClient, query: str = "") -> list[dict[str, object]]:
    response = await client.get(f"/messaging/suppressions/acme{query}", headers=auth(ACME_KEY))
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_a_suppressed_number_is_refused_and_lifting_it_lets_sends_through(
    client: httpx.AsyncClient,
) -> None:
    added = await _suppress(
        client, {"channel": "sms", "address": PHONE, "reason": "asked by phone"}
    )
    assert added.status_code == 201, added.text
    assert added.json() == {"tenantId": "acme", "channel": "sms", "address": PHONE, "created": True}
    again = await _suppress(client, {"channel": "sms", "address": PHONE})
    assert (again.status_code, again.json()["created"]) == (200, False)

    error = assert_error(await send(client, "sms"), 422, "recipient_suppressed", names=PHONE)
    assert (error["field"], error["addresses"]) == ("to", [PHONE])
    # per channel: the same number on another tenant or channel is not suppressed
    assert (await send(client, "whatsapp", key=GLOBEX_KEY)).status_code == 202

    [item] = await _listed(client, "?channel=sms")
    assert (item["address"], item["reason"]) == (PHONE, "asked by phone")

    removed = await client.delete(
        f"/messaging/suppressions/acme/sms/{PHONE}", headers=auth(ACME_KEY)
    )
    assert removed.status_code == 204, removed.text
    assert (await send(client, "sms")).status_code == 202
    gone = await client.delete(f"/messaging/suppressions/acme/sms/{PHONE}", headers=auth(ACME_KEY))
    assert_error(gone, 404, "suppression_not_found", names=PHONE)


async def test_every_suppressed_address_of_an_email_is_named(client: httpx.AsyncClient) -> None:
    for address in ("Bea@Example.com", "carla@example.com"):
        response = await _suppress(client, {"channel": "email", "address": address})
        assert response.status_code == 201, response.text
    # kept by the mailbox, in lower case: the same key a bounce callback would give
    assert [i["address"] for i in await _listed(client)] == ["bea@example.com", "carla@example.com"]

    body = {
        **EMAIL,
        "to": ["ana@example.com", "BEA@example.com"],
        "cc": ["CARLA@example.com"],
    }
    error = assert_error(await send(client, "email", body), 422, "recipient_suppressed")
    assert error["addresses"] == ["BEA@example.com", "CARLA@example.com"]
    assert error["field"] == "to"
    assert "BEA@example.com" in error["message"] and "CARLA@example.com" in error["message"]
    logs = await client.get("/messaging/logs/acme", headers=auth(ACME_KEY))
    assert logs.json()["items"] == []  # nothing was stored


async def test_stop_and_start_replies(client: httpx.AsyncClient, gateway: Gateway) -> None:
    async def reply(text: str, n: int) -> None:
        event = {"id": f"hj-in-{n}", "from": PHONE, "to": "+34911222333", "body": text}
        response = await post_events(client, [event])
        assert response.status_code in (200, 204), response.text

    await reply("¿Mañana?", 1)  # not a keyword
    assert (await send(client, "sms")).status_code == 202
    await reply("  Bájá! ", 2)
    assert_error(await send(client, "sms"), 422, "recipient_suppressed", names=PHONE)
    [item] = await _listed(client)
    assert item["reason"] == "replied 'Bájá!'"
    await reply("alta", 3)
    assert (await send(client, "sms")).status_code == 202

    text = gateway.metrics.registry.get_sample_value(
        "pipecore_suppressions_total",
        {"tenant": "acme", "channel": "sms", "action": "suppressed", "source": "keyword"},
    )
    assert text == 1.0


async def test_a_tenant_list_replaces_the_default_keywords(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    tenant = gateway.registry.snapshot.tenant("acme")
    assert tenant is not None
    custom = tenant.model_copy(
        update={"opt_out": tenant.opt_out.model_copy(update={"stop": ("NO MAS",)})}
    )
    gateway.registry.replace_tenant("acme", custom)

    event = {"id": "hj-in-9", "from": PHONE, "to": "+34911222333", "body": "STOP"}
    assert (await post_events(client, [event])).status_code in (200, 204)
    assert (await send(client, "sms")).status_code == 202  # STOP is not on acme's list
    event = {"id": "hj-in-10", "from": PHONE, "to": "+34911222333", "body": "No más"}
    assert (await post_events(client, [event])).status_code in (200, 204)
    assert_error(await send(client, "sms"), 422, "recipient_suppressed")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"address": PHONE}, "channel"),
        ({"channel": "sms"}, "address"),
        ({"channel": "fax", "address": PHONE}, "channel"),
        ({"channel": "sms", "address": "not a number"}, "address"),
        ({"channel": "email", "address": "nope"}, "address"),
        ({"channel": "sms", "address": PHONE, "reason": "x" * 501}, "reason"),
        ({"channel": "sms", "address": PHONE, "extra": 1}, "extra"),
    ],
)
async def test_bad_additions_name_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    error = assert_error(await _suppress(client, body), 422, "validation_error")
    assert error["field"] == field, error
    assert await _listed(client) == []


async def test_who_may_see_and_change_a_list(client: httpx.AsyncClient) -> None:
    body = {"channel": "sms", "address": PHONE}
    assert_error(await _suppress(client, body, key=GLOBEX_KEY), 403, "tenant_forbidden")
    assert (await _suppress(client, body, key=ADMIN_KEY)).status_code == 201
    listed = await client.get("/messaging/suppressions/acme", headers=auth(GLOBEX_KEY))
    assert_error(listed, 403, "tenant_forbidden")
    unknown = await client.get("/messaging/suppressions/nobody", headers=auth(ADMIN_KEY))
    assert_error(unknown, 404, "tenant_not_found")
    wrong = await client.get("/messaging/suppressions/acme?channel=fax", headers=auth(ACME_KEY))
    assert_error(wrong, 404, "unknown_channel")
    cursor = await client.get("/messaging/suppressions/acme?cursor=zzz", headers=auth(ACME_KEY))
    assert_error(cursor, 422, "validation_error", names="cursor")


async def test_the_list_pages_by_cursor(client: httpx.AsyncClient) -> None:
    numbers = [f"+3460011122{n}" for n in range(5)]
    for number in numbers:
        assert (await _suppress(client, {"channel": "sms", "address": number})).status_code == 201
    first = (
        await client.get("/messaging/suppressions/acme?limit=3", headers=auth(ACME_KEY))
    ).json()
    assert first["nextCursor"]
    rest = await client.get(
        f"/messaging/suppressions/acme?limit=3&cursor={first['nextCursor']}", headers=auth(ACME_KEY)
    )
    assert rest.json()["nextCursor"] is None
    assert [i["address"] for i in first["items"] + rest.json()["items"]] == numbers
