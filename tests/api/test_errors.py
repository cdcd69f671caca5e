"""The error shape everywhere: unknown routes, wrong methods, bad input, store failures."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from pipecored.errors import StoreError
from pipecored.gateway import Gateway
from tests.api.conftest import ACME_KEY, SMS, assert_error, send
from tests.conftest import ADMIN_KEY, auth


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/", id="root"),
        pytest.param("/messaging", id="prefix"),
        pytest.param("/messaging/send", id="send-without-channel"),
        pytest.param("/messaging/nope/acme", id="unknown"),
    ],
)
async def test_unknown_route_is_404_json(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(path, headers=auth(ACME_KEY)), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/messaging/send/sms", id="get-send"),
        pytest.param("DELETE", "/messaging/messages/msg_1", id="delete-message"),
        pytest.param("PUT", "/messaging/config/provider", id="put-config"),
        pytest.param("POST", "/healthz", id="post-healthz"),
        pytest.param("GET", "/messaging/messages/msg_1/retry", id="get-retry"),
    ],
)
async def test_wrong_method_is_405_json(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path, headers=auth(ADMIN_KEY))
    assert_error(response, 405, "method_not_allowed")
    assert "allow" in response.headers


# Odd input on every route that takes some: never a 500, always the error shape.
ODD_PATHS = [
    "/messaging/messages/%00",
    "/messaging/messages/" + "x" * 5000,
    "/messaging/messages/" + quote("ñ🍷'; DROP TABLE messages;--"),
    "/messaging/messages/..%2F..%2Fetc%2Fpasswd",
    "/messaging/logs/" + quote("ñandú"),
    "/messaging/logs/..%2Facme",
    "/messaging/stats/" + "a" * 5000,
    "/messaging/config/" + quote("../../pipecored"),
    "/messaging/config/%00",
    "/messaging/logs/acme?limit=%00",
    "/messaging/logs/acme?cursor=" + "%FF" * 10,
    "/messaging/logs/acme?limit=99999999999999999999999999",
    "/messaging/logs/acme?limit=-1",
    "/messaging/logs/acme?limit=1e3",
    "/messaging/logs/acme?limit=" + quote("\u0661\u0662"),  # Arabic-Indic "12": isdigit() is True
    "/messaging/logs/acme?limit=" + "9" * 5000,  # over int()'s digit limit
    "/messaging/logs/acme?cursor=" + base64.urlsafe_b64encode(b"s" + b"9" * 30).decode(),
    "/messaging/logs/acme?cursor=" + base64.urlsafe_b64encode(b"s" + b"9" * 5000).decode(),
    "/messaging/logs/acme?cursor=" + base64.urlsafe_b64encode("s\u0661\u0662".encode()).decode(),
    "/messaging/stats/acme?since=" + quote("2024-13-45T99:99"),
    "/messaging/stats/acme?since=" + "9" * 40,
]


@pytest.mark.parametrize("path", [pytest.param(p, id=p[:60]) for p in ODD_PATHS])
async def test_odd_paths_are_client_errors(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers=auth(ADMIN_KEY))
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert_error(response, response.status_code, response.json()["error"]["code"])


ODD_BODIES: list[Any] = [
    {"to": {"$gt": ""}, "body": "x"},
    {"to": "+34600111222", "body": {"text": "x"}},
    {"to": "+34600111222", "body": ["x"]},
    {"to": "+34600111222", "body": True},
    {"to": "+34600111222", "body": 1e400},
    {"to": "+34600111222", "body": "x", "tenant_id": {"a": 1}},
    {"to": "+34600111222", "body": "\u0000\ud800"},
    {"": ""},
    {"to": "+34600111222", "body": "x", "__class__": "y"},
    {"to": "+34600111222" * 1000, "body": "x"},
]


@pytest.mark.parametrize("channel", ["sms", "email", "whatsapp"])
@pytest.mark.parametrize("body", [pytest.param(b, id=str(i)) for i, b in enumerate(ODD_BODIES)])
async def test_odd_send_bodies_are_client_errors(
    client: httpx.AsyncClient, channel: str, body: Any
) -> None:
    raw = json.dumps(body).replace("Infinity", "1e400")
    response = await client.post(
        f"/messaging/send/{channel}",
        content=raw,
        headers={**auth(ADMIN_KEY), "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert_error(response, response.status_code, response.json()["error"]["code"])


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"tenantId": "acme"}, id="only-tenant"),
        pytest.param({"tenantId": "acme", "channel": 5, "provider": "x"}, id="channel-number"),
        pytest.param({"tenantId": "acme", "channel": "sms", "provider": None}, id="provider-null"),
        pytest.param(
            {"tenantId": "acme", "channel": "sms", "provider": "console", "credentials": []},
            id="credentials-list",
        ),
        pytest.param(
            {"tenantId": "acme", "channel": "sms", "provider": "httpjson", "credentials": {"a": 1}},
            id="credential-number",
        ),
        pytest.param(
            {"tenantId": "acme", "channel": "sms", "provider": "console", "isActive": "maybe"},
            id="isActive-string",
        ),
        pytest.param(["x"], id="array"),
    ],
)
async def test_odd_config_bodies_are_422(client: httpx.AsyncClient, body: Any) -> None:
    response = await client.post("/messaging/config/provider", json=body, headers=auth(ADMIN_KEY))
    assert_error(response, 422, "validation_error")


async def test_store_failure_is_503_with_retry_after(
    client: httpx.AsyncClient, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("disk I/O error")

    monkeypatch.setattr(gateway.store, "accept", broken)
    monkeypatch.setattr(gateway.store, "get", broken)
    monkeypatch.setattr(gateway.store, "list_messages", broken)
    monkeypatch.setattr(gateway.store, "stats", broken)

    responses = [
        await send(client, "sms", SMS),
        await client.get("/messaging/messages/msg_1", headers=auth(ACME_KEY)),
        await client.get("/messaging/logs/acme", headers=auth(ACME_KEY)),
        await client.get("/messaging/stats/acme", headers=auth(ACME_KEY)),
    ]
    for response in responses:
        assert_error(response, 503, "store_unavailable")
        assert response.headers["Retry-After"].isdigit()
        assert "disk I/O" not in response.text


async def test_unexpected_exception_is_500_without_a_stack_trace(
    client: httpx.AsyncClient, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def bug(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals at /srv/pipecored/store.py line 42")

    monkeypatch.setattr(gateway.store, "get", bug)
    response = await client.get("/messaging/messages/msg_1", headers=auth(ACME_KEY))
    assert_error(response, 500, "internal_error")
    assert "secret internals" not in response.text
    assert "RuntimeError" not in response.text


async def test_tenant_whose_file_never_loaded_is_409_on_send(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    tenants = gateway.config_dir / "tenants"
    (tenants / "initech.yaml").write_text("name: Initech\nchannels: {sms: {provider: nope}}\n")
    gateway.registry.reload_tenant("initech")

    response = await send(client, "sms", {**SMS, "tenant_id": "initech"}, key=ADMIN_KEY)
    assert_error(response, 409, "tenant_config_invalid")


async def test_error_responses_never_echo_secrets(client: httpx.AsyncClient) -> None:
    body = {
        "tenantId": "acme",
        "channel": "sms",
        "provider": "twilio",
        "credentials": {"accountSid": "AC123", "authToken": "tw-super-secret-token-0123"},
    }
    response = await client.post("/messaging/config/provider", json=body, headers=auth(ADMIN_KEY))
    assert_error(response, 422, "validation_error")
    assert "tw-super-secret-token-0123" not in response.text
