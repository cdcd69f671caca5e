"""What an outside attack on the API found (issue 14): wrong keys are throttled and counted, a
trailing slash gets the error shape, a log page is bounded, the store file is private."""

from __future__ import annotations

import os
import stat

import httpx

from pipecored.config.model import AuthConfig
from pipecored.gateway import Gateway
from pipecored.store.sqlite import SQLiteStore
from tests.api.conftest import ACME_KEY, assert_error, message, post_events, send
from tests.conftest import ADMIN_KEY, auth

BURST = AuthConfig().failed_key_limit.burst  # the shipped default


async def test_wrong_keys_are_throttled_per_address_and_counted(client: httpx.AsyncClient) -> None:
    for _ in range(BURST):
        refused = await client.get("/messaging/logs/acme", headers=auth("guess-0000000000"))
        assert_error(refused, 401, "invalid_api_key")
    throttled = await client.get("/messaging/logs/acme", headers=auth("guess-0000000001"))
    assert_error(throttled, 429, "rate_limited")
    assert int(throttled.headers["Retry-After"]) >= 1
    # past the budget the key is not even looked at: a right key from that address waits too
    right_key = await client.get("/messaging/logs/acme", headers=auth(ACME_KEY))
    assert right_key.status_code == 429
    metrics = (await client.get("/metrics")).text
    assert f'pipecore_auth_failures_total{{reason="invalid_api_key"}} {BURST}.0' in metrics
    assert 'pipecore_auth_failures_total{reason="throttled"} 2.0' in metrics


async def test_a_right_key_is_never_throttled_by_its_own_requests(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(BURST * 2):
        response = await client.get("/messaging/logs/acme", headers=auth(ACME_KEY))
        assert response.status_code == 200


async def test_a_trailing_slash_is_a_404_in_the_error_shape_without_a_redirect(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/messaging/logs/acme/", headers={**auth(ACME_KEY), "Host": "evil.example"}
    )
    assert_error(response, 404, "not_found")
    assert "location" not in response.headers


async def test_a_log_page_truncates_inbound_bodies_and_the_message_has_them_whole(
    client: httpx.AsyncClient,
) -> None:
    text = "¿Abrís mañana? 🍷 " * 400  # 7,200 characters
    inbound = await post_events(
        client, [{"from": "+34600999888", "to": "+34911222333", "body": text, "id": "in-1"}]
    )
    assert inbound.status_code == 200, inbound.text
    page = await client.get("/messaging/logs/acme?direction=inbound", headers=auth(ACME_KEY))
    [item] = page.json()["items"]
    assert item["bodyTruncated"] is True
    assert item["body"] == text[:1000]
    whole = await message(client, item["id"], key=ADMIN_KEY)
    assert whole["body"] == text
    assert "bodyTruncated" not in whole


async def test_the_store_file_is_readable_by_its_owner_only(
    app_client: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, gateway = app_client
    assert (await send(client)).status_code == 202
    store = gateway.store
    assert isinstance(store, SQLiteStore)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
