"""What the API tests share: the tenants' keys, the error-shape check, and small send helpers
over the in-process app (``app_client`` in tests/conftest.py)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from pipecored.gateway import Gateway
from tests.conftest import ADMIN_KEY, HTTPJSON_SIGNING, auth, eventually
from tests.fakes.httpjson import signed_events

ACME_KEY = "acme-key-0123456789"
GLOBEX_KEY = "globex-key-0123456789"
DEMO_KEY = "demo-key-0123456789"

SMS = {"to": "+34600111222", "body": "hola"}
EMAIL = {"to": "ana@example.com", "subject": "Your booking", "htmlContent": "<p>See you</p>"}
WHATSAPP = {"to": "+34600111222", "body": "hola"}

_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@pytest.fixture
def client(app_client: tuple[httpx.AsyncClient, Gateway]) -> httpx.AsyncClient:
    return app_client[0]


@pytest.fixture
def gateway(app_client: tuple[httpx.AsyncClient, Gateway]) -> Gateway:
    return app_client[1]


def assert_error(
    response: httpx.Response, status: int, code: str, *, names: str | None = None
) -> dict[str, Any]:
    """The SPEC's error shape, with that status and code; ``names`` must be in the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == code, error
    assert _SNAKE.match(error["code"]), error
    assert isinstance(error["message"], str) and error["message"], error
    assert "Traceback" not in response.text
    if names is not None:
        assert names in error["message"], error
    return error  # type: ignore[no-any-return]


async def send(
    client: httpx.AsyncClient,
    channel: str = "sms",
    body: dict[str, Any] | None = None,
    *,
    key: str = ACME_KEY,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    payload = body if body is not None else {"sms": SMS, "email": EMAIL}.get(channel, WHATSAPP)
    return await client.post(
        f"/messaging/send/{channel}", json=payload, headers={**auth(key), **(headers or {})}
    )


async def accepted_id(client: httpx.AsyncClient, channel: str = "sms", **kwargs: Any) -> str:
    response = await send(client, channel, **kwargs)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def message(client: httpx.AsyncClient, message_id: str, key: str = ADMIN_KEY) -> Any:
    response = await client.get(f"/messaging/messages/{message_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


async def wait_status(
    client: httpx.AsyncClient, message_id: str, *statuses: str, key: str = ADMIN_KEY
) -> Any:
    """The message once its status is one of ``statuses``."""

    async def reached() -> Any:
        current = await message(client, message_id, key)
        return current if current["status"] in statuses else None

    return await eventually(reached)


async def post_events(
    client: httpx.AsyncClient,
    events: list[dict[str, Any]],
    *,
    channel: str = "sms",
    query: str = "tenant_id=acme&provider=httpjson",
    secret: str = HTTPJSON_SIGNING,
) -> httpx.Response:
    """An httpjson webhook call, signed with ``secret``."""
    body, headers = signed_events(secret, events)
    return await client.post(f"/messaging/webhook/{channel}?{query}", content=body, headers=headers)
