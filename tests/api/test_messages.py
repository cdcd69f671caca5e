"""GET /messaging/messages/{id} and POST /messaging/messages/{id}/retry."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from tests.api.conftest import (
    ACME_KEY,
    GLOBEX_KEY,
    SMS,
    accepted_id,
    assert_error,
    message,
    wait_status,
)
from tests.conftest import ADMIN_KEY, auth, eventually
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
ATTEMPT_FIELDS = {
    "provider",
    "startedAt",
    "outcome",
    "httpStatus",
    "errorCode",
    "errorMessage",
    "durationMs",
}


def assert_utc_iso(value: str) -> datetime:
    assert value.endswith("Z"), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0
    return parsed


async def test_a_sent_message_with_one_attempt(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway
) -> None:
    message_id = await accepted_id(client, "sms")

    sent = await wait_status(client, message_id, "sent", key=ACME_KEY)

    assert LOG_FIELDS | {"attempts"} <= set(sent)
    assert sent["id"] == message_id
    assert sent["tenantId"] == "acme"
    assert sent["channel"] == "sms"
    assert sent["direction"] == "outbound"
    assert sent["provider"] == "httpjson"
    assert sent["to"] == SMS["to"]
    assert sent["providerMessageId"] == "hj-1"
    assert sent["attemptCount"] == 1
    assert sent["errorCode"] is None and sent["errorMessage"] is None
    assert assert_utc_iso(sent["createdAt"]) <= assert_utc_iso(sent["updatedAt"])
    [attempt] = sent["attempts"]
    assert set(attempt) == ATTEMPT_FIELDS
    assert attempt["provider"] == "httpjson"
    assert attempt["outcome"] == "success"
    assert attempt["httpStatus"] == 201
    assert attempt["errorCode"] is None
    assert attempt["durationMs"] >= 0
    assert_utc_iso(attempt["startedAt"])


async def test_a_retryable_failure_then_success_shows_two_attempts(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway
) -> None:
    fake_gateway.fail_next(503)
    message_id = await accepted_id(client, "sms")

    sent = await wait_status(client, message_id, "sent")

    assert sent["attemptCount"] == 2
    first, second = sent["attempts"]
    assert first["outcome"] == "retryable_error"
    assert first["httpStatus"] == 503
    assert first["errorCode"] == "http_503"
    assert first["errorMessage"] == "scripted 503"
    assert second["outcome"] == "success"
    assert second["httpStatus"] == 201
    assert assert_utc_iso(first["startedAt"]) <= assert_utc_iso(second["startedAt"])
    assert sent["errorCode"] is None  # a later success clears the earlier error
    assert len(fake_gateway.sent) == 2


async def test_a_permanent_failure_fails_the_message(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway
) -> None:
    fake_gateway.fail_next(400)
    message_id = await accepted_id(client, "sms")

    failed = await wait_status(client, message_id, "failed")

    assert failed["errorCode"] == "http_400"
    assert failed["errorMessage"] == "scripted 400"
    [attempt] = failed["attempts"]
    assert attempt["outcome"] == "permanent_error"
    assert attempt["httpStatus"] == 400
    assert attempt["errorCode"] == "http_400"
    assert len(fake_gateway.sent) == 1


@pytest.mark.parametrize(
    "key",
    [pytest.param(GLOBEX_KEY, id="other-tenant"), pytest.param(ACME_KEY, id="own-tenant")],
)
@pytest.mark.parametrize("suffix", [pytest.param("", id="get"), pytest.param("/retry", id="retry")])
async def test_another_tenants_message_is_404_as_if_absent(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway, key: str, suffix: str
) -> None:
    fake_gateway.fail_next(400)
    acme_message = await accepted_id(client, "sms")
    await wait_status(client, acme_message, "failed")
    target = acme_message if key == GLOBEX_KEY else "msg_00000000000000000000000000000000"
    method = "POST" if suffix else "GET"

    response = await client.request(
        method, f"/messaging/messages/{target}{suffix}", headers=auth(key)
    )

    error = assert_error(response, 404, "message_not_found")
    # the same answer, word for word, as for an id that does not exist
    absent = await client.request(
        method, f"/messaging/messages/msg_nope{suffix}", headers=auth(key)
    )
    assert error["message"].replace(target, "ID") == absent.json()["error"]["message"].replace(
        "msg_nope", "ID"
    )


async def test_retry_a_failed_message(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway
) -> None:
    fake_gateway.fail_next(400)
    message_id = await accepted_id(client, "sms")
    await wait_status(client, message_id, "failed")

    response = await client.post(f"/messaging/messages/{message_id}/retry", headers=auth(ACME_KEY))

    assert response.status_code == 202, response.text
    assert response.json()["id"] == message_id
    assert response.json()["status"] == "queued"
    sent = await wait_status(client, message_id, "sent")
    assert [a["outcome"] for a in sent["attempts"]] == ["permanent_error", "success"]
    assert sent["errorCode"] is None
    assert len(fake_gateway.sent) == 2


@pytest.mark.parametrize(
    "status", [pytest.param("sent", id="sent"), pytest.param("queued", id="queued")]
)
async def test_retry_a_message_that_is_not_failed_is_409(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway, status: str
) -> None:
    if status == "queued":
        fake_gateway.fail_next(503, retry_after=60)  # it waits a minute, queued, for its retry
    message_id = await accepted_id(client, "sms")
    if status == "queued":

        async def waiting() -> bool:
            current = await message(client, message_id)
            return current["status"] == "queued" and current["attemptCount"] == 1

        await eventually(waiting)
    else:
        await wait_status(client, message_id, "sent")

    response = await client.post(f"/messaging/messages/{message_id}/retry", headers=auth(ACME_KEY))

    assert_error(response, 409, "not_retryable")
    assert status in response.json()["error"]["message"]


async def test_admin_sees_every_tenants_messages(client: httpx.AsyncClient) -> None:
    acme = await accepted_id(client, "sms")
    globex = await accepted_id(client, "whatsapp", key=GLOBEX_KEY)

    assert (await message(client, acme, ADMIN_KEY))["tenantId"] == "acme"
    assert (await message(client, globex, ADMIN_KEY))["tenantId"] == "globex"
