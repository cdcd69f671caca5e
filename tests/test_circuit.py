"""Circuit breakers: open after consecutive failures, trial after the cooldown, close on success."""

from __future__ import annotations

from typing import Any

from pipecored.circuit import CircuitBreakers, CircuitChange
from tests.conftest import ConfigDir, auth, eventually, httpjson_channel
from tests.fakes.httpjson import HttpJsonGateway

KEY = ("acme", "sms", "twilio")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_the_threshold_lets_one_trial_through_and_closes_on_success() -> None:
    clock = Clock()
    breakers = CircuitBreakers(clock=clock)
    changes: list[CircuitChange] = []
    breakers.listeners.append(changes.append)

    for _ in range(2):
        assert breakers.allow(KEY, cooldown=30, trial_timeout=5)
        breakers.failure(KEY, threshold=3, reason="http_503: down")
    assert breakers.state(KEY) == "closed"
    breakers.failure(KEY, threshold=3, reason="http_503: down")
    assert breakers.state(KEY) == "open"
    assert [(c.state, c.reason) for c in changes] == [("open", "http_503: down")]
    assert not breakers.allow(KEY, cooldown=30, trial_timeout=5)
    assert breakers.retry_at(KEY, 30) == 1030.0

    clock.now += 30
    assert breakers.allow(KEY, cooldown=30, trial_timeout=5)  # the trial
    assert breakers.state(KEY) == "half_open"
    assert not breakers.allow(KEY, cooldown=30, trial_timeout=5)  # one at a time
    assert breakers.retry_at(KEY, 30) > clock.now  # waiting messages do not spin

    breakers.failure(KEY, threshold=3, reason="http_503: still down")
    assert breakers.state(KEY) == "open"  # a failed trial opens it for another cooldown
    assert len(changes) == 1  # still the same outage: no second "open" event
    clock.now += 30
    assert breakers.allow(KEY, cooldown=30, trial_timeout=5)
    breakers.success(KEY)
    assert breakers.state(KEY) == "closed"
    assert [c.state for c in changes] == ["open", "closed"]
    assert changes[1].opened_at == 1000.0


def test_a_lost_trial_does_not_wedge_the_circuit() -> None:
    clock = Clock()
    breakers = CircuitBreakers(clock=clock)
    for _ in range(3):
        breakers.failure(KEY, threshold=3, reason="timeout")
    clock.now += 30
    assert breakers.allow(KEY, cooldown=30, trial_timeout=5)
    clock.now += 6  # the trial's answer never came (the worker died mid-call)
    assert breakers.allow(KEY, cooldown=30, trial_timeout=5)


def test_success_resets_the_consecutive_count() -> None:
    breakers = CircuitBreakers()
    for _ in range(10):
        breakers.failure(KEY, threshold=3, reason="x")
        breakers.failure(KEY, threshold=3, reason="x")
        breakers.success(KEY)
    assert breakers.state(KEY) == "closed"


async def test_an_open_circuit_sends_to_the_fallback_without_calling_the_provider(
    config_dir: ConfigDir, fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    primary = httpjson_channel(fake_gateway.url)
    primary["fallbacks"] = [{"provider": "console"}]
    config_dir.write_tenant(
        "acme", {"name": "Acme", "apiKeys": ["acme-key-0123456789"], "channels": {"sms": primary}}
    )
    delivery = {"maxAttempts": 1, "circuit": {"failureThreshold": 2, "cooldown": "300ms"}}
    async with app_client_factory(delivery=delivery) as (client, gateway):

        async def send_and_wait() -> dict[str, Any]:
            r = await client.post(
                "/messaging/send/sms",
                json={"to": "+34600111222", "body": "hola"},
                headers=auth("acme-key-0123456789"),
            )
            message_id = r.json()["id"]

            async def done() -> dict[str, Any] | None:
                m: dict[str, Any] = (
                    await client.get(
                        f"/messaging/messages/{message_id}", headers=auth("acme-key-0123456789")
                    )
                ).json()
                return m if m["status"] in ("sent", "delivered", "failed") else None

            result: dict[str, Any] = await eventually(done)
            return result

        async def metrics() -> str:
            return (await client.get("/metrics")).text

        up = 'pipecore_provider_up{channel="sms",provider="httpjson",tenant="acme"}'
        fake_gateway.fail_next(503, times=2)
        for _ in range(2):  # two failures: each fails over, and the circuit opens
            assert (await send_and_wait())["provider"] == "console"
        assert f"{up} 0.0" in await metrics()
        calls = len(fake_gateway.server.requests)
        assert calls == 2

        message = await send_and_wait()  # the circuit is open: straight to the fallback
        assert message["provider"] == "console"
        assert [a["provider"] for a in message["attempts"]] == ["console"]
        assert len(fake_gateway.server.requests) == calls

        await eventually(
            lambda: (
                gateway.worker.circuits.retry_at(("acme", "sms", "httpjson"), 0.3)
                <= gateway.worker.clock()
            )
        )
        message = await send_and_wait()  # after the cooldown: the trial call, which succeeds
        assert message["provider"] == "httpjson"
        assert f"{up} 1.0" in await metrics()
        failovers = (
            'pipecore_failovers_total{channel="sms",from_provider="httpjson",'
            'tenant="acme",to_provider="console"} 3.0'
        )
        assert failovers in await metrics()


async def test_without_a_fallback_messages_wait_for_the_circuit_instead_of_failing(
    fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    delivery = {"maxAttempts": 100, "circuit": {"failureThreshold": 2, "cooldown": "500ms"}}
    async with app_client_factory(delivery=delivery) as (client, gateway):
        fake_gateway.fail_next(503, times=2)
        r = await client.post(
            "/messaging/send/sms",
            json={"to": "+34600111222", "body": "hola"},
            headers=auth("acme-key-0123456789"),
        )
        message_id = r.json()["id"]
        record = await eventually(
            lambda: _state(gateway, message_id, lambda rec: rec.error_code == "circuit_open")
        )
        assert record.attempt_count == 2  # the waiting itself makes no calls
        sent = await eventually(
            lambda: _state(gateway, message_id, lambda rec: rec.status == "sent")
        )
        assert sent.attempt_count == 3
        assert len(fake_gateway.server.requests) == 3


async def _state(gateway: Any, message_id: str, test: Any) -> Any:
    record = await gateway.store.get(message_id)
    return record if record is not None and test(record) else None


async def test_a_route_removed_from_the_config_is_no_longer_reported_down(
    config_dir: ConfigDir, fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    delivery = {"maxAttempts": 100, "circuit": {"failureThreshold": 1, "cooldown": "60s"}}
    async with app_client_factory(delivery=delivery) as (client, gateway):
        fake_gateway.fail_next(503, times=5)
        await client.post(
            "/messaging/send/sms",
            json={"to": "+34600111222", "body": "hola"},
            headers=auth("acme-key-0123456789"),
        )
        up = 'pipecore_provider_up{channel="sms",provider="httpjson",tenant="acme"} 0.0'

        async def reported_down() -> bool:
            return up in (await client.get("/metrics")).text

        await eventually(reported_down)
        # The operator switches acme's SMS to another provider: the old one's outage is over
        # as far as this tenant is concerned.
        config_dir.write_tenant(
            "acme",
            {
                "name": "Acme",
                "apiKeys": ["acme-key-0123456789"],
                "channels": {"sms": {"provider": "console"}},
            },
        )
        gateway.registry.reload_tenant("acme")
        metrics = (await client.get("/metrics")).text
        # (the request counters are history and stay; the health gauge is about the present)
        assert (
            'pipecore_provider_up{channel="sms",provider="httpjson",tenant="acme"}' not in metrics
        )
        assert gateway.worker.circuits.state(("acme", "sms", "httpjson")) == "closed"


async def test_a_permanent_error_resets_the_count_toward_opening(
    config_dir: ConfigDir, fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    # docs/delivery.md: a permanent error (a bad number) proves the provider answers, so it
    # resets the consecutive count. Two retryable failures, a permanent one, two more: the count
    # never reaches three, the circuit stays closed and the next message goes to the provider.
    primary = httpjson_channel(fake_gateway.url)
    primary["fallbacks"] = [{"provider": "console"}]
    config_dir.write_tenant(
        "acme", {"name": "Acme", "apiKeys": ["acme-key-0123456789"], "channels": {"sms": primary}}
    )
    delivery = {"maxAttempts": 1, "circuit": {"failureThreshold": 3, "cooldown": "60s"}}
    answers = [503, 503, 400, 503, 503]
    async with app_client_factory(delivery=delivery) as (client, gateway):
        outcomes = []
        for status in answers:
            fake_gateway.fail_next(status)
            message = await _send_and_settle(client)
            outcomes.append((message["status"], message["provider"], message["errorCode"]))
        assert outcomes == [
            ("delivered", "console", None),  # failed over after the 503
            ("delivered", "console", None),
            ("failed", "httpjson", "http_400"),  # permanent: failed at once, no failover
            ("delivered", "console", None),
            ("delivered", "console", None),
        ]
        assert gateway.worker.circuits.state(("acme", "sms", "httpjson")) == "closed"
        up = 'pipecore_provider_up{channel="sms",provider="httpjson",tenant="acme"}'
        assert f"{up} 0.0" not in (await client.get("/metrics")).text

        message = await _send_and_settle(client)
        assert (message["status"], message["provider"]) == ("sent", "httpjson")
        assert len(fake_gateway.server.requests) == len(answers) + 1
        assert f"{up} 1.0" in (await client.get("/metrics")).text


async def test_permanent_errors_beyond_the_threshold_never_open_the_circuit(
    fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    delivery = {"maxAttempts": 1, "circuit": {"failureThreshold": 2, "cooldown": "60s"}}
    async with app_client_factory(delivery=delivery) as (client, gateway):
        fake_gateway.fail_next(400, times=5)
        for _ in range(5):
            message = await _send_and_settle(client)
            assert (message["status"], message["errorCode"]) == ("failed", "http_400")
        assert gateway.worker.circuits.state(("acme", "sms", "httpjson")) == "closed"
        message = await _send_and_settle(client)
        assert (message["status"], message["provider"]) == ("sent", "httpjson")
        assert [a["provider"] for a in message["attempts"]] == ["httpjson"]
        assert len(fake_gateway.server.requests) == 6
        metrics = (await client.get("/metrics")).text
        assert (
            'pipecore_provider_up{channel="sms",provider="httpjson",tenant="acme"} 1.0' in metrics
        )


async def _send_and_settle(client: Any) -> dict[str, Any]:
    r = await client.post(
        "/messaging/send/sms",
        json={"to": "+34600111222", "body": "hola"},
        headers=auth("acme-key-0123456789"),
    )
    assert r.status_code == 202, r.text
    message_id = r.json()["id"]

    async def settled() -> dict[str, Any] | None:
        m: dict[str, Any] = (
            await client.get(
                f"/messaging/messages/{message_id}", headers=auth("acme-key-0123456789")
            )
        ).json()
        return m if m["status"] in ("sent", "delivered", "failed") else None

    result: dict[str, Any] = await eventually(settled)
    return result
