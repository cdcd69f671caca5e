"""Delivery under provider faults (timeouts, resets mid-response, slow answers), rate limits,
and a store that cannot write."""

from __future__ import annotations

import resource
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from pipecored.gateway import Gateway
from pipecored.store import NewMessage, new_message_id
from pipecored.store.sqlite import SQLiteStore
from tests.conftest import (
    ConfigDir,
    Daemon,
    auth,
    default_daemon_settings,
    eventually,
    httpjson_channel,
    wait_until,
)
from tests.fakes.httpjson import HttpJsonGateway
from tests.fakes.raw import FlakyServer

ACME = "acme-key-0123456789"


async def _deliver_one(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.post(
        "/messaging/send/sms", json={"to": "+34600111222", "body": "hola"}, headers=auth(ACME)
    )
    assert r.status_code == 202, r.text
    message_id = r.json()["id"]

    async def done() -> dict[str, Any] | None:
        m: dict[str, Any] = (
            await client.get(f"/messaging/messages/{message_id}", headers=auth(ACME))
        ).json()
        return m if m["status"] in ("sent", "failed") else None

    result: dict[str, Any] = await eventually(done)
    return result


@pytest.mark.parametrize(
    ("plan", "outcome"),
    [
        pytest.param(["reset"], "retryable_error", id="connection-closed-without-answer"),
        pytest.param(["truncate"], "retryable_error", id="reset-mid-response"),
    ],
)
async def test_a_connection_lost_mid_call_is_retried(
    config_dir: ConfigDir, app_client_factory: Any, plan: Any, outcome: str
) -> None:
    flaky = FlakyServer(plan).start()
    try:
        config_dir.write_tenant(
            "acme",
            {"name": "Acme", "apiKeys": [ACME], "channels": {"sms": httpjson_channel(flaky.url)}},
        )
        async with app_client_factory() as (client, _):
            message = await _deliver_one(client)
        assert message["status"] == "sent"
        assert [a["outcome"] for a in message["attempts"]] == [outcome, "success"]
        assert message["attempts"][0]["errorCode"] == "connection_error"
    finally:
        flaky.stop()


async def test_a_provider_slower_than_the_timeout_is_a_timeout_and_retried(
    fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    fake_gateway.delay = 0.5
    async with app_client_factory(delivery={"timeout": "200ms"}) as (client, _):
        r = await client.post(
            "/messaging/send/sms", json={"to": "+34600111222", "body": "hola"}, headers=auth(ACME)
        )
        message_id = r.json()["id"]

        async def two_timeouts() -> Any:
            m = (await client.get(f"/messaging/messages/{message_id}", headers=auth(ACME))).json()
            return m if len(m["attempts"]) >= 2 else None

        message = await eventually(two_timeouts)
        fake_gateway.delay = 0.0
        assert [a["outcome"] for a in message["attempts"][:2]] == ["timeout", "timeout"]
        assert message["attempts"][0]["errorCode"] == "timeout"
        metrics = (await client.get("/metrics")).text
        assert (
            'pipecore_provider_requests_total{channel="sms",outcome="timeout",'
            'provider="httpjson",tenant="acme"}' in metrics
        )


async def test_a_slow_provider_within_the_timeout_is_a_success(
    fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    fake_gateway.delay = 0.3
    async with app_client_factory(delivery={"timeout": "2s"}) as (client, _):
        message = await _deliver_one(client)
    assert message["status"] == "sent"
    assert [a["outcome"] for a in message["attempts"]] == ["success"]
    assert message["attempts"][0]["durationMs"] >= 300


def _rate_limited_acme(config_dir: ConfigDir, url: str, *, per_second: float, burst: int) -> None:
    channel = httpjson_channel(url, rateLimit={"perSecond": per_second, "burst": burst})
    config_dir.write_tenant(
        "acme", {"name": "Acme", "apiKeys": [ACME], "channels": {"sms": channel}}
    )


async def _send_many(client: httpx.AsyncClient, n: int) -> None:
    for i in range(n):
        r = await client.post(
            "/messaging/send/sms", json={"to": "+34600111222", "body": f"n{i}"}, headers=auth(ACME)
        )
        assert r.status_code == 202, r.text


async def test_a_rate_limited_channel_never_exceeds_its_rate(
    config_dir: ConfigDir, fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    per_second, burst, count = 5.0, 2, 12
    _rate_limited_acme(config_dir, fake_gateway.url, per_second=per_second, burst=burst)
    arrivals: list[float] = []
    original = fake_gateway._answer

    async def timed(request: Any) -> Any:
        arrivals.append(time.monotonic())
        return await original(request)

    fake_gateway.server.handler = timed
    async with app_client_factory() as (client, _):
        await _send_many(client, count)
        await eventually(lambda: len(arrivals) >= count)
    # A token bucket of 5/s with a burst of 2: any n consecutive calls span at least
    # (n - 2) / 5 seconds, so the provider never sees a burst it would answer with 429. One
    # token's time (0.2 s) is left for the way from the daemon to the fake: a call delayed on a
    # loaded machine brings it closer to the next, on time, one. Without pacing, or at twice the
    # rate, the 12 calls come in well under the 1.8 s their span must still reach.
    for start in range(len(arrivals)):
        for end in range(start + 3, len(arrivals)):
            span = arrivals[end] - arrivals[start]
            calls = end - start + 1
            assert span >= (calls - burst - 1) / per_second, (start, end, span)


def _count_calls(obj: Any, *names: str) -> Counter[str]:
    """Count the calls of these async methods of ``obj`` from now on (they still run)."""
    calls: Counter[str] = Counter()

    def counting(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return await method(*args, **kwargs)

        return counted

    for name in names:
        setattr(obj, name, counting(name, getattr(obj, name)))
    return calls


async def test_a_throttled_channel_does_not_keep_the_worker_querying_the_store(
    config_dir: ConfigDir, fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    # Its queued messages are due but left out of each claim until the backlog shrinks; the
    # worker must sleep until then rather than claim and look for due messages in a loop.
    _rate_limited_acme(config_dir, fake_gateway.url, per_second=4, burst=1)
    async with app_client_factory() as (client, gateway):
        queries = _count_calls(gateway.store, "claim", "next_due")
        await _send_many(client, 12)
        # 12 sends at 4/s take about 3 s, most of them with the channel throttled
        await eventually(lambda: len(fake_gateway.sent) >= 12, timeout=15)
    # a few queries per send and wake-up, where the loop made thousands a second
    assert queries["claim"] + queries["next_due"] < 300, queries


def test_a_store_that_cannot_write_refuses_sends_and_recovers(
    config_dir: ConfigDir,
    daemon_factory: Callable[..., Daemon],
    fake_gateway: HttpJsonGateway,
    tmp_path: Path,
) -> None:
    daemon = daemon_factory(config_dir.path).start()
    assert daemon.proc is not None
    db = tmp_path / "pipecored.db"
    with daemon.client(ACME) as client:
        assert (
            client.post("/messaging/send/sms", json={"to": "+34600111222", "body": "a"}).status_code
            == 202
        )
        wait_until(lambda: fake_gateway.sent)
        # The disk is full: writes past this size fail with EFBIG, as on a full disk.
        largest = max(db.stat().st_size, Path(f"{db}-wal").stat().st_size)
        resource.prlimit(
            daemon.proc.pid, resource.RLIMIT_FSIZE, (largest + 64 * 1024, resource.RLIM_INFINITY)
        )
        html = "<p>" + "¡Reserva confirmada! " * 20_000 + "</p>"
        refused = client.post(
            "/messaging/send/email",
            json={"to": "ana@example.com", "subject": "Reserva", "htmlContent": html},
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "store_unavailable"
        assert refused.headers["Retry-After"]
        logs = client.get("/messaging/logs/acme?channel=email").json()
        assert logs["items"] == []  # a 503 means nothing was stored

        resource.prlimit(
            daemon.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )
        accepted = client.post(
            "/messaging/send/email",
            json={"to": "ana@example.com", "subject": "Reserva", "htmlContent": html},
        )
        assert accepted.status_code == 202, accepted.text
        wait_until(lambda: any(m["channel"] == "email" for m in fake_gateway.sent))
    assert daemon.stop() == 0


async def test_a_stop_gives_unfinished_messages_back_to_the_queue_at_once(
    config_dir: ConfigDir, fake_gateway: HttpJsonGateway, tmp_path: Path, providers: Any
) -> None:
    settings = default_daemon_settings(tmp_path / "pipecored.db")
    settings["server"] = {"shutdownGrace": "200ms"}
    config_dir.write_daemon(settings)
    fake_gateway.delay = 5.0  # every call outlasts the grace
    gateway = Gateway(config_dir.path, providers, metrics_registry=CollectorRegistry(), watch=False)
    gateway.load()
    await gateway.start()
    ids = []
    for _ in range(3):
        message = NewMessage(
            id=new_message_id(),
            tenant_id="acme",
            channel="sms",
            to="+34600111222",
            sender=None,
            payload={"to": ["+34600111222"], "body": "hola"},
            created_at=time.time(),
        )
        await gateway.store.accept(message)
        ids.append(message.id)
    gateway.worker.wake()
    await eventually(lambda: len(fake_gateway.server.requests) >= 3)
    await gateway.stop()
    # Reopen the store as the next start would: nothing is left leased to a dead process.
    reopened = SQLiteStore(str(tmp_path / "pipecored.db"))
    await reopened.open()
    try:
        for message_id in ids:
            record = await reopened.get(message_id)
            assert record is not None
            assert record.status == "queued", record.status
            assert record.lease_token is None
    finally:
        await reopened.close()
