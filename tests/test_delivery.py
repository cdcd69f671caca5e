"""The delivery worker against loopback fakes: retries, permanent errors, failover, expiry."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipecored.gateway import Gateway
from pipecored.policy import backoff_delay
from tests.conftest import ConfigDir, auth, eventually, httpjson_channel
from tests.fakes.httpjson import HttpJsonGateway

ACME = "acme-key-0123456789"


@given(
    attempt=st.integers(min_value=1, max_value=60),
    initial=st.floats(min_value=0.001, max_value=10),
    maximum=st.floats(min_value=0.001, max_value=600),
    retry_after=st.none() | st.floats(min_value=0, max_value=3600),
    fraction=st.floats(min_value=0, max_value=1),
)
def test_backoff_is_full_jitter_under_the_ceiling_unless_the_provider_asks_for_more(
    attempt: int, initial: float, maximum: float, retry_after: float | None, fraction: float
) -> None:
    ceiling = min(maximum, initial * 2 ** (attempt - 1))
    delay = backoff_delay(
        attempt,
        initial=initial,
        maximum=maximum,
        retry_after=retry_after,
        rng=lambda lo, hi: lo + (hi - lo) * fraction,
    )
    jittered = ceiling * fraction
    assert delay == pytest.approx(max(jittered, retry_after or 0.0))
    if retry_after is None:
        assert 0 <= delay <= ceiling


async def _send(client: httpx.AsyncClient, body: str = "hola") -> str:
    r = await client.post(
        "/messaging/send/sms", json={"to": "+34600111222", "body": body}, headers=auth(ACME)
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def _final(client: httpx.AsyncClient, message_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        r = await client.get(f"/messaging/messages/{message_id}", headers=auth(ACME))
        m: dict[str, Any] = r.json()
        return m if m["status"] in ("sent", "delivered", "failed") else None

    result: dict[str, Any] = await eventually(done)
    return result


async def test_retryable_errors_are_retried_until_the_provider_accepts(
    app_client: tuple[httpx.AsyncClient, Gateway], fake_gateway: HttpJsonGateway
) -> None:
    client, _ = app_client
    fake_gateway.fail_next(503, times=2)
    message = await _final(client, await _send(client))
    assert message["status"] == "sent"
    assert message["attemptCount"] == 3
    assert [a["outcome"] for a in message["attempts"]] == [
        "retryable_error",
        "retryable_error",
        "success",
    ]
    assert message["attempts"][0]["httpStatus"] == 503
    assert message["attempts"][0]["errorCode"] == "http_503"
    assert message["providerMessageId"].startswith("hj-")


async def test_a_permanent_error_fails_at_once_with_the_providers_code(
    app_client: tuple[httpx.AsyncClient, Gateway], fake_gateway: HttpJsonGateway
) -> None:
    client, _ = app_client
    fake_gateway.fail_next(400)
    message = await _final(client, await _send(client))
    assert message["status"] == "failed"
    assert message["attemptCount"] == 1
    assert message["errorCode"] == "http_400"
    assert message["errorMessage"] == "scripted 400"
    assert len(fake_gateway.server.requests) == 1


async def test_max_attempts_does_not_fail_a_message_that_meets_only_retryable_errors(
    config_dir: ConfigDir, fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    # maxAttempts is per route: past it, with no fallback, the message starts the route again
    # (backoff still growing) instead of failing; only maxAge fails it.
    settings = {
        "maxAttempts": 3,
        "retryBackoff": {"initial": "10ms", "max": "50ms"},
        "circuit": {"failureThreshold": 100},  # the circuit's own wait is another test's
    }
    async with app_client_factory(delivery=settings) as (client, _):
        fake_gateway.fail_next(503, times=7)
        message = await _final(client, await _send(client))
    assert message["status"] == "sent"
    assert message["attemptCount"] == 8
    assert [a["outcome"] for a in message["attempts"]] == ["retryable_error"] * 7 + ["success"]


async def test_failover_to_the_fallback_after_the_provider_exhausts_its_attempts(
    config_dir: ConfigDir, fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    backup = HttpJsonGateway().start()
    try:
        primary = httpjson_channel(fake_gateway.url)
        primary["fallbacks"] = [httpjson_channel(backup.url)]
        for field in ("isActive",):
            primary.pop(field, None)
        config_dir.write_tenant(
            "acme", {"name": "Acme", "apiKeys": [ACME], "channels": {"sms": primary}}
        )
        async with app_client_factory(delivery={"maxAttempts": 2}) as (client, _):
            fake_gateway.fail_next(503, times=10)
            message = await _final(client, await _send(client, "¡Hola, Ñandú! 🐦"))
            metrics = (await client.get("/metrics")).text
        assert message["status"] == "sent"
        assert [a["outcome"] for a in message["attempts"]] == [
            "retryable_error",
            "retryable_error",
            "success",
        ]
        assert backup.sent[0]["body"] == "¡Hola, Ñandú! 🐦"
        assert (
            'pipecore_failovers_total{channel="sms",from_provider="httpjson",'
            'tenant="acme",to_provider="httpjson"} 1.0' in metrics
        )
    finally:
        backup.stop()


async def test_revoked_credentials_fail_over_at_once(
    config_dir: ConfigDir, fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    backup = HttpJsonGateway().start()
    try:
        primary = httpjson_channel(fake_gateway.url)
        primary["fallbacks"] = [httpjson_channel(backup.url)]
        config_dir.write_tenant(
            "acme", {"name": "Acme", "apiKeys": [ACME], "channels": {"sms": primary}}
        )
        async with app_client_factory() as (client, _):
            fake_gateway.fail_next(401)
            message = await _final(client, await _send(client))
        assert message["status"] == "sent"
        assert [a["outcome"] for a in message["attempts"]] == ["permanent_error", "success"]
        assert len(backup.sent) == 1
    finally:
        backup.stop()


async def test_retry_after_from_the_provider_postpones_the_next_attempt(
    app_client: tuple[httpx.AsyncClient, Gateway], fake_gateway: HttpJsonGateway
) -> None:
    client, gateway = app_client
    fake_gateway.fail_next(429, retry_after=30)
    message_id = await _send(client)

    async def retried_later() -> Any:
        record = await gateway.store.get(message_id)
        return (
            record if record and record.attempt_count == 1 and record.status == "queued" else None
        )

    record = await eventually(retried_later)
    assert record.not_before is not None
    assert record.not_before - time.time() > 25


async def test_a_message_older_than_max_age_fails_as_expired(
    app_client_factory: Any, fake_gateway: HttpJsonGateway
) -> None:
    async with app_client_factory(delivery={"maxAge": "300ms", "maxAttempts": 1000}) as (
        client,
        _,
    ):
        fake_gateway.fail_next(503, times=1000)
        message = await _final(client, await _send(client))
    assert message["status"] == "failed"
    assert message["errorCode"] == "expired"
