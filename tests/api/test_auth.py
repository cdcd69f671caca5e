"""Who may call what: every route in ``ROUTES`` against every kind of caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pipecored.api.app import ROUTES
from tests.api.conftest import ACME_KEY, GLOBEX_KEY, SMS, accepted_id, assert_error, wait_status
from tests.conftest import ADMIN_KEY, HTTPJSON_SIGNING, auth
from tests.fakes.httpjson import HttpJsonGateway, signed_events


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    json: Any = None


Prepare = Callable[[httpx.AsyncClient, HttpJsonGateway], Awaitable[Call]]


async def _send(client: httpx.AsyncClient, fake: HttpJsonGateway) -> Call:
    return Call("POST", "/messaging/send/sms", {**SMS, "tenant_id": "acme"})


async def _get_message(client: httpx.AsyncClient, fake: HttpJsonGateway) -> Call:
    message_id = await accepted_id(client, "sms", key=ACME_KEY)
    return Call("GET", f"/messaging/messages/{message_id}")


async def _retry_message(client: httpx.AsyncClient, fake: HttpJsonGateway) -> Call:
    fake.fail_next(400)
    message_id = await accepted_id(client, "sms", key=ACME_KEY)
    await wait_status(client, message_id, "failed")
    return Call("POST", f"/messaging/messages/{message_id}/retry")


async def _cancel_message(client: httpx.AsyncClient, fake: HttpJsonGateway) -> Call:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    message_id = await accepted_id(client, "sms", key=ACME_KEY, body={**SMS, "sendAt": later})
    return Call("POST", f"/messaging/messages/{message_id}/cancel")


async def _set_provider(client: httpx.AsyncClient, fake: HttpJsonGateway) -> Call:
    body = {"tenantId": "acme", "channel": "sms", "provider": "console", "isActive": True}
    return Call("POST", "/messaging/config/provider", body)


async def _get_config(client: httpx.AsyncClient, fake: HttpJsonGateway) -> Call:
    return Call("GET", "/messaging/config/acme")


async def _get_logs(client: httpx.AsyncClient, fake: HttpJsonGateway) -> Call:
    return Call("GET", "/messaging/logs/acme?limit=5")


async def _get_stats(client: httpx.AsyncClient, fake: HttpJsonGateway) -> Call:
    return Call("GET", "/messaging/stats/acme")


async def _get_experiments(client: httpx.AsyncClient, fake: HttpJsonGateway) -> Call:
    return Call("GET", "/messaging/experiments/acme")


async def _get_events(client: httpx.AsyncClient, fake: HttpJsonGateway) -> Call:
    return Call("GET", "/messaging/events/acme?limit=5")


async def _list_suppressions(client: httpx.AsyncClient, fake: HttpJsonGateway) -> Call:
    return Call("GET", "/messaging/suppressions/acme?channel=sms")


async def _add_suppression(client: httpx.AsyncClient, fake: HttpJsonGateway) -> Call:
    return Call(
        "POST", "/messaging/suppressions/acme", {"channel": "sms", "address": "+34600000009"}
    )


async def _remove_suppression(client: httpx.AsyncClient, fake: HttpJsonGateway) -> Call:
    added = await client.post(
        "/messaging/suppressions/acme",
        json={"channel": "sms", "address": "+34600000008"},
        headers=auth(ACME_KEY),
    )
    assert added.status_code in (200, 201), added.text
    return Call("DELETE", "/messaging/suppressions/acme/sms/+34600000008")


# (method, route path) -> how to make a request to it that acme's own key may make
BEARER_ROUTES: dict[tuple[str, str], tuple[Prepare, bool]] = {
    # value: (prepare, admin_only)
    ("POST", "/messaging/send/{channel}"): (_send, False),
    ("GET", "/messaging/messages/{message_id}"): (_get_message, False),
    ("POST", "/messaging/messages/{message_id}/retry"): (_retry_message, False),
    ("POST", "/messaging/messages/{message_id}/cancel"): (_cancel_message, False),
    ("POST", "/messaging/config/provider"): (_set_provider, True),
    ("GET", "/messaging/config/{tenant_id}"): (_get_config, False),
    ("GET", "/messaging/logs/{tenant_id}"): (_get_logs, False),
    ("GET", "/messaging/stats/{tenant_id}"): (_get_stats, False),
    ("GET", "/messaging/events/{tenant_id}"): (_get_events, False),
    ("GET", "/messaging/experiments/{tenant_id}"): (_get_experiments, False),
    ("GET", "/messaging/suppressions/{tenant_id}"): (_list_suppressions, False),
    ("POST", "/messaging/suppressions/{tenant_id}"): (_add_suppression, False),
    ("DELETE", "/messaging/suppressions/{tenant_id}/{channel}/{address}"): (
        _remove_suppression,
        False,
    ),
}
# Message ids of another tenant are 404, as if absent; everything else is 403.
HIDES_OTHERS_AS_ABSENT = {
    ("GET", "/messaging/messages/{message_id}"),
    ("POST", "/messaging/messages/{message_id}/retry"),
    ("POST", "/messaging/messages/{message_id}/cancel"),
}
PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
}
SIGNED_ROUTES = {
    ("GET", "/messaging/webhook/{channel}"),
    ("POST", "/messaging/webhook/{channel}"),
}


def route_methods() -> set[tuple[str, str]]:
    found = set()
    for route in ROUTES:
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, route.path))
    return found


def test_every_route_is_in_the_matrix() -> None:
    covered = set(BEARER_ROUTES) | PUBLIC_ROUTES | SIGNED_ROUTES
    assert route_methods() == covered


# caller -> headers
CALLERS: dict[str, dict[str, str]] = {
    "no-key": {},
    "basic": {"Authorization": "Basic YWNtZTpzZWNyZXQ="},
    "bearer-without-key": {"Authorization": "Bearer"},
    "bearer-blank-key": {"Authorization": "Bearer    "},
    "token-scheme": {"Authorization": f"Token {ACME_KEY}"},
    "unknown-key": auth("not-a-key-0123456789"),
    "almost-acme": auth(ACME_KEY + "x"),
    "other-tenant": auth(GLOBEX_KEY),
    "own-tenant": auth(ACME_KEY),
    "admin": auth(ADMIN_KEY),
}
UNAUTHENTICATED = {
    "no-key": "missing_api_key",
    "basic": "invalid_authorization",
    "bearer-without-key": "invalid_authorization",
    "bearer-blank-key": "invalid_authorization",
    "token-scheme": "invalid_authorization",
    "unknown-key": "invalid_api_key",
    "almost-acme": "invalid_api_key",
}


def _matrix() -> list[Any]:
    cases = []
    for (method, path), (prepare, admin_only) in BEARER_ROUTES.items():
        for caller in CALLERS:
            if caller in UNAUTHENTICATED:
                expected: tuple[int, str | None] = (401, UNAUTHENTICATED[caller])
            elif caller == "other-tenant":
                if (method, path) in HIDES_OTHERS_AS_ABSENT:
                    expected = (404, "message_not_found")
                elif admin_only:
                    expected = (403, "admin_required")
                else:
                    expected = (403, "tenant_forbidden")
            elif caller == "own-tenant" and admin_only:
                expected = (403, "admin_required")
            else:
                expected = (200, None)  # any 2xx
            cases.append(
                pytest.param(
                    method, path, prepare, caller, expected, id=f"{method} {path} [{caller}]"
                )
            )
    return cases


@pytest.mark.parametrize(("method", "path", "prepare", "caller", "expected"), _matrix())
async def test_auth_matrix(
    client: httpx.AsyncClient,
    fake_gateway: HttpJsonGateway,
    method: str,
    path: str,
    prepare: Prepare,
    caller: str,
    expected: tuple[int, str | None],
) -> None:
    call = await prepare(client, fake_gateway)

    response = await client.request(method, call.url, json=call.json, headers=CALLERS[caller])

    status, code = expected
    if code is None:
        assert 200 <= response.status_code < 300, response.text
        return
    assert_error(response, status, code)
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path"), [pytest.param(m, p, id=f"{m} {p}") for m, p in sorted(PUBLIC_ROUTES)]
)
@pytest.mark.parametrize("caller", [pytest.param(c, id=c) for c in ("no-key", "unknown-key")])
async def test_public_routes_need_no_key(
    client: httpx.AsyncClient, method: str, path: str, caller: str
) -> None:
    response = await client.request(method, path, headers=CALLERS[caller])
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("caller", [pytest.param(c, id=c) for c in ("no-key", "unknown-key")])
async def test_webhook_is_authenticated_by_signature_not_bearer(
    client: httpx.AsyncClient, caller: str
) -> None:
    body, headers = signed_events(HTTPJSON_SIGNING, [{"id": "hj-unknown", "status": "sent"}])
    response = await client.post(
        "/messaging/webhook/sms?tenant_id=acme&provider=httpjson",
        content=body,
        headers={**headers, **CALLERS[caller]},
    )
    assert response.status_code == 200, response.text


async def test_an_admin_key_does_not_replace_a_webhook_signature(
    client: httpx.AsyncClient,
) -> None:
    body, headers = signed_events("wrong-secret", [{"id": "hj-1", "status": "delivered"}])
    response = await client.post(
        "/messaging/webhook/sms?tenant_id=acme&provider=httpjson",
        content=body,
        headers={**headers, **auth(ADMIN_KEY)},
    )
    assert_error(response, 403, "bad_signature")


async def test_webhook_get_is_a_signed_subscription_check(client: httpx.AsyncClient) -> None:
    # Meta's subscription check: the verify token is the credential; no bearer key involved.
    body = {
        "tenantId": "globex",
        "channel": "whatsapp",
        "provider": "meta",
        "credentials": {
            "accessToken": "EAAG-globex-access-token-0123",
            "phoneNumberId": "1234567890",
            "verifyToken": "globex-verify-token-0123",
            "appSecret": "globex-app-secret-0123",
        },
    }
    configured = await client.post("/messaging/config/provider", json=body, headers=auth(ADMIN_KEY))
    assert configured.status_code == 200, configured.text
    url = "/messaging/webhook/whatsapp?tenant_id=globex&provider=meta&hub.mode=subscribe"

    good = await client.get(f"{url}&hub.verify_token=globex-verify-token-0123&hub.challenge=42")
    bad = await client.get(f"{url}&hub.verify_token=nope&hub.challenge=42", headers=auth(ADMIN_KEY))

    assert good.status_code == 200, good.text
    assert good.text == "42"
    assert_error(bad, 403, "bad_signature")


async def test_keys_are_not_logged(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await client.get("/messaging/config/acme", headers=auth(ACME_KEY))
    await client.get("/messaging/config/acme", headers=auth("unknown-key-0123456789"))
    out = capsys.readouterr()
    assert ACME_KEY not in out.out + out.err
    assert "unknown-key-0123456789" not in out.out + out.err
