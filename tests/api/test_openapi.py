"""GET /openapi.json: a valid OpenAPI 3.1 document that matches the routes and the responses."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_spec_validator import validate
from werkzeug.datastructures import Headers, ImmutableMultiDict

from pipecored.api.app import ROUTES
from pipecored.gateway import Gateway
from tests.api.conftest import (
    ACME_KEY,
    EMAIL,
    GLOBEX_KEY,
    SMS,
    WHATSAPP,
    accepted_id,
    post_events,
    wait_status,
)
from tests.conftest import ADMIN_KEY, HTTPJSON_SIGNING, HTTPJSON_TOKEN, auth
from tests.fakes.httpjson import HttpJsonGateway, signed_events

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = response.json()
    return doc


async def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


async def test_the_document_and_the_routes_agree(document: dict[str, Any]) -> None:
    routed = {
        (method.lower(), route.path)
        for route in ROUTES
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }
    assert routed - documented == set(), "routes missing from the document"
    assert documented - routed == set(), "documented paths that no route serves"


async def test_every_operation_documents_its_errors(document: dict[str, Any]) -> None:
    public = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS or path in public:
                continue
            responses = operation["responses"]
            if path.startswith("/messaging/webhook"):
                assert "403" in responses, (method, path)
                continue
            assert {"401", "403"} <= set(responses), (method, path)
            assert operation.get("security") == [{"bearer": []}], (method, path)


# -- real responses against the document -------------------------------------------------------


class SpecRequest:
    """openapi_core's Request protocol over an httpx request."""

    def __init__(self, request: httpx.Request) -> None:
        self.host_url = f"{request.url.scheme}://{request.url.netloc.decode()}"
        self.path = request.url.path
        self.full_url_pattern = self.host_url + self.path
        self.method = request.method.lower()
        self.body = request.content or None
        self.content_type = request.headers.get("content-type", "")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(),
        )


class SpecResponse:
    """openapi_core's Response protocol over an httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "").lower()
        self.headers = Headers(list(response.headers.items()))
        self.data = response.content


class Checked:
    """An httpx client whose every exchange is validated against the document."""

    def __init__(self, client: httpx.AsyncClient, document: dict[str, Any]) -> None:
        self.client = client
        self.openapi = OpenAPI.from_dict(document)
        self.checked: list[tuple[str, str, int]] = []

    async def request(
        self, method: str, url: str, *, check_request: bool = True, **kwargs: Any
    ) -> httpx.Response:
        response = await self.client.request(method, url, **kwargs)
        if check_request:
            self.openapi.validate_request(SpecRequest(response.request))
        self.openapi.validate_response(SpecRequest(response.request), SpecResponse(response))
        self.checked.append((method, response.request.url.path, response.status_code))
        return response


@pytest.fixture
def checked(client: httpx.AsyncClient, document: dict[str, Any]) -> Checked:
    return Checked(client, document)


async def test_successful_responses_match_the_document(
    checked: Checked, client: httpx.AsyncClient, fake_gateway: HttpJsonGateway, gateway: Gateway
) -> None:
    acme = auth(ACME_KEY)
    admin = auth(ADMIN_KEY)

    sms = await checked.request("POST", "/messaging/send/sms", json=SMS, headers=acme)
    assert sms.status_code == 202, sms.text
    email = await checked.request(
        "POST",
        "/messaging/send/email",
        json={**EMAIL, "tenant_id": "acme", "to": ["a@example.com", "b@example.com"]},
        headers={**admin, "Idempotency-Key": "e-1"},
    )
    assert email.status_code == 202, email.text
    replay = await checked.request(
        "POST",
        "/messaging/send/email",
        json={**EMAIL, "tenant_id": "acme", "to": ["a@example.com", "b@example.com"]},
        headers={**admin, "Idempotency-Key": "e-1"},
    )
    assert replay.status_code == 202, replay.text
    whatsapp = await checked.request(
        "POST", "/messaging/send/whatsapp", json=WHATSAPP, headers=auth(GLOBEX_KEY)
    )
    assert whatsapp.status_code == 202, whatsapp.text
    twilio_style = await checked.request(  # the document admits what the server accepts
        "POST",
        "/messaging/send/whatsapp",
        json={**WHATSAPP, "to": "whatsapp:" + WHATSAPP["to"]},
        headers=auth(GLOBEX_KEY),
    )
    assert twilio_style.status_code == 202, twilio_style.text

    sent = await wait_status(client, sms.json()["id"], "sent")
    await wait_status(client, email.json()["id"], "sent")
    await wait_status(client, whatsapp.json()["id"], "sent", key=GLOBEX_KEY)
    # Only now: the fake's scripted failure goes to whichever call comes next, so nothing else
    # may still be on its way to it.
    fake_gateway.fail_next(400)
    failed_id = await accepted_id(client, "sms")
    await wait_status(client, failed_id, "failed")
    await post_events(client, [{"id": sent["providerMessageId"], "status": "delivered"}])
    await post_events(client, [{"from": "+34600999888", "to": "+34911222333", "body": "hola"}])

    for url in (
        f"/messaging/messages/{sms.json()['id']}",
        f"/messaging/messages/{email.json()['id']}",
        f"/messaging/messages/{failed_id}",
        "/messaging/logs/acme",
        "/messaging/logs/acme?limit=2",
        "/messaging/logs/acme?direction=inbound&channel=sms",
        "/messaging/stats/acme",
        "/messaging/stats/acme?since=2020-01-01T00:00:00Z",
        "/messaging/config/acme",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ):
        response = await checked.request("GET", url, headers=admin)
        assert response.status_code == 200, (url, response.text)

    retry = await checked.request("POST", f"/messaging/messages/{failed_id}/retry", headers=acme)
    assert retry.status_code == 202, retry.text

    updated = await checked.request(
        "POST",
        "/messaging/config/provider",
        json={
            "tenantId": "acme",
            "channel": "sms",
            "provider": "httpjson",
            "credentials": {"token": HTTPJSON_TOKEN, "signingSecret": HTTPJSON_SIGNING},
            "isActive": True,
        },
        headers=admin,
    )
    assert updated.status_code == 200, updated.text
    created = await checked.request(
        "POST",
        "/messaging/config/provider",
        json={"tenantId": "initech", "channel": "email", "provider": "console"},
        headers=admin,
    )
    assert created.status_code == 201, created.text

    tenants = gateway.config_dir / "tenants"
    (tenants / "hooli.yaml").write_text("name: Hooli\nchannels: {sms: {provider: nope}}\n")
    gateway.registry.reload_tenant("hooli")
    broken = await checked.request("GET", "/messaging/config/hooli", headers=admin)
    assert broken.status_code == 200, broken.text
    assert "configError" in broken.json()


async def test_webhook_responses_match_the_document(checked: Checked) -> None:
    body, headers = signed_events(HTTPJSON_SIGNING, [{"id": "hj-9", "status": "delivered"}])
    url = "/messaging/webhook/sms?tenant_id=acme&provider=httpjson"
    accepted = await checked.request("POST", url, content=body, headers=headers)
    assert accepted.status_code in (200, 204), accepted.text
    forged = await checked.request(
        "POST", url, content=body, headers={**headers, "X-Signature": "0" * 64}
    )
    assert forged.status_code == 403, forged.text


ERRORS = [
    pytest.param("POST", "/messaging/send/sms", {"json": SMS}, 401, id="send-401"),
    pytest.param(
        "POST",
        "/messaging/send/whatsapp",
        {"json": {**WHATSAPP, "tenant_id": "globex"}, "headers": auth(ACME_KEY)},
        403,
        id="send-403",
    ),
    pytest.param(
        "POST", "/messaging/send/sms", {"json": SMS, "headers": auth(GLOBEX_KEY)}, 404, id="404"
    ),
    pytest.param(
        "POST",
        "/messaging/send/whatsapp",
        {"json": WHATSAPP, "headers": auth(ACME_KEY)},
        409,
        id="send-409",
    ),
    pytest.param(
        "POST",
        "/messaging/send/sms",
        {"content": b"{", "headers": {**auth(ACME_KEY), "Content-Type": "application/json"}},
        400,
        id="send-400",
    ),
    pytest.param(
        "POST",
        "/messaging/send/sms",
        {
            "content": b"x" * (1024 * 1024 + 1),
            "headers": {**auth(ACME_KEY), "Content-Type": "application/json"},
        },
        413,
        id="send-413",
    ),
    pytest.param(
        "POST",
        "/messaging/send/sms",
        {"content": b"to=1", "headers": {**auth(ACME_KEY), "Content-Type": "text/plain"}},
        415,
        id="send-415",
    ),
    pytest.param(
        "POST",
        "/messaging/send/sms",
        {"json": {**SMS, "to": "12"}, "headers": auth(ACME_KEY)},
        422,
        id="send-422",
    ),
    pytest.param(
        "GET", "/messaging/messages/msg_nope", {"headers": auth(ACME_KEY)}, 404, id="message-404"
    ),
    pytest.param(
        "GET", "/messaging/logs/acme?limit=0", {"headers": auth(ACME_KEY)}, 422, id="logs-422"
    ),
    pytest.param("GET", "/messaging/logs/globex", {"headers": auth(ACME_KEY)}, 403, id="logs-403"),
    pytest.param(
        "GET", "/messaging/stats/acme?since=x", {"headers": auth(ACME_KEY)}, 422, id="stats-422"
    ),
    pytest.param(
        "GET", "/messaging/config/initech", {"headers": auth(ADMIN_KEY)}, 404, id="config-404"
    ),
    pytest.param(
        "POST",
        "/messaging/config/provider",
        {
            "json": {"tenantId": "acme", "channel": "sms", "provider": "x"},
            "headers": auth(ADMIN_KEY),
        },
        422,
        id="config-422",
    ),
    pytest.param(
        "POST",
        "/messaging/config/provider",
        {
            "json": {"tenantId": "acme", "channel": "sms", "provider": "console"},
            "headers": auth(ACME_KEY),
        },
        403,
        id="config-403",
    ),
]


@pytest.mark.parametrize(("method", "url", "kwargs", "status"), ERRORS)
async def test_error_responses_match_the_document(
    checked: Checked, method: str, url: str, kwargs: dict[str, Any], status: int
) -> None:
    # The request is invalid on purpose; only the response is checked.
    response = await checked.request(method, url, check_request=False, **kwargs)
    assert response.status_code == status, response.text


async def test_retry_conflict_matches_the_document(
    checked: Checked, client: httpx.AsyncClient
) -> None:
    message_id = await accepted_id(client, "sms")
    await wait_status(client, message_id, "sent")
    response = await checked.request(
        "POST", f"/messaging/messages/{message_id}/retry", headers=auth(ACME_KEY)
    )
    assert response.status_code == 409, response.text


async def test_uneditable_config_conflict_matches_the_document(
    checked: Checked, gateway: Gateway
) -> None:
    (gateway.config_dir / "tenants" / "initech.yaml").write_text("name: [unclosed\n")
    response = await checked.request(
        "POST",
        "/messaging/config/provider",
        json={"tenantId": "initech", "channel": "sms", "provider": "console"},
        headers=auth(ADMIN_KEY),
    )
    assert response.status_code == 409, response.text
