"""A real daemon on either store (``store_url``: a SQLite file, or a PostgreSQL database of the
test's own): a message sent, delivered by the provider's signed callback and told to the
tenant's platform as signed events; a restart keeps every message, its history and its
idempotency key. On PostgreSQL, a daemon killed with kill -9 while its messages are at the
provider: the next one (a new node) takes them back once the dead node's heartbeat is 15 s old,
long before the 10 minute lease they were claimed with."""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from standardwebhooks import Webhook
from starlette.responses import Response

from pipecored.testing import FakeServer, RecordedRequest
from tests.conftest import (
    HTTPJSON_SIGNING,
    ConfigDir,
    Daemon,
    default_daemon_settings,
    httpjson_channel,
    wait_until,
)
from tests.fakes.httpjson import HttpJsonGateway, signed_events

KEY = "acme-key-0123456789"
SECRET = "whsec_" + base64.b64encode(b"acme-platform-signing-key-000001").decode()
TEXT = "¿Mañana a las 20:00? Reserva confirmada 🍷 — Begoña"
TO = "+34600111222"


@pytest.fixture
def platform() -> Iterator[FakeServer]:
    """The tenant's platform: answers every event post 204 and keeps it."""

    def answer(request: RecordedRequest) -> Response:
        return Response(status_code=204)

    server = FakeServer(answer).start()
    yield server
    server.stop()


def _config(
    tmp_path: Path, store: str, gateway: HttpJsonGateway, platform_url: str, **delivery: Any
) -> ConfigDir:
    root = tmp_path / "config"
    (root / "tenants").mkdir(parents=True)
    cfg = ConfigDir(root)
    cfg.write_daemon(
        {**default_daemon_settings(tmp_path / "unused.db", **delivery), "store": store}
    )
    cfg.write_tenant(
        "acme",
        {
            "name": "Acme",
            "apiKeys": [KEY],
            "channels": {"sms": httpjson_channel(gateway.url)},
            "webhooks": [{"url": f"{platform_url}/hooks/pipecore", "secret": SECRET}],
        },
    )
    return cfg


def _verified_events(platform: FakeServer) -> list[dict[str, Any]]:
    hook = Webhook(SECRET)
    return [dict(hook.verify(r.body, r.headers)) for r in list(platform.requests)]


def _message(client: httpx.Client, message_id: str) -> dict[str, Any]:
    response = client.get(f"/messaging/messages/{message_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _send(client: httpx.Client, body: str = TEXT, **headers: str) -> httpx.Response:
    return client.post("/messaging/send/sms", json={"to": TO, "body": body}, headers=headers)


def _deliver(daemon: Daemon, provider_message_id: str) -> None:
    body, headers = signed_events(
        HTTPJSON_SIGNING, [{"id": provider_message_id, "status": "delivered"}]
    )
    url = f"{daemon.url}/messaging/webhook/sms?tenant_id=acme&provider=httpjson"
    response = httpx.post(url, content=body, headers=headers)
    assert response.status_code == 200, response.text


def test_send_deliver_and_the_platform_hears_of_it(
    tmp_path: Path,
    daemon_factory: Callable[..., Daemon],
    fake_gateway: HttpJsonGateway,
    platform: FakeServer,
    store_url: str,
) -> None:
    cfg = _config(tmp_path, store_url, fake_gateway, platform.url)
    daemon = daemon_factory(cfg.path).start()
    with daemon.client(KEY) as client:
        accepted = _send(client)
        assert accepted.status_code == 202, accepted.text
        message_id = accepted.json()["id"]
        sent = wait_until(
            lambda: (m := _message(client, message_id))["status"] == "sent" and m, timeout=30
        )
        assert [request["body"] for request in fake_gateway.sent] == [TEXT]

        _deliver(daemon, sent["providerMessageId"])
        assert _message(client, message_id)["status"] == "delivered"

        def told() -> list[str]:
            return [e["type"] for e in _verified_events(platform) if e["data"]["id"] == message_id]

        wait_until(lambda: sorted(told()) == ["message.delivered", "message.sent"], timeout=30)
        listed = client.get("/messaging/events/acme", params={"limit": 50})
        assert listed.status_code == 200, listed.text
        assert [e["type"] for e in listed.json()["items"]] == ["message.sent", "message.delivered"]
        assert SECRET not in listed.text


def test_a_restart_keeps_every_message_its_history_and_its_idempotency_key(
    tmp_path: Path,
    daemon_factory: Callable[..., Daemon],
    fake_gateway: HttpJsonGateway,
    platform: FakeServer,
    store_url: str,
) -> None:
    cfg = _config(tmp_path, store_url, fake_gateway, platform.url)
    first = daemon_factory(cfg.path).start()
    texts = [f"{TEXT} #{n}" for n in range(3)]
    with first.client(KEY) as client:
        ids = [_send(client, texts[0], **{"Idempotency-Key": "pedido-1842"}).json()["id"]]
        ids += [_send(client, text).json()["id"] for text in texts[1:]]
        wait_until(lambda: all(_message(client, i)["status"] == "sent" for i in ids), timeout=30)
        _deliver(first, _message(client, ids[0])["providerMessageId"])
        before = {i: _message(client, i) for i in ids}
    first.signal(signal.SIGTERM)
    assert first.wait() == 0, first.output()

    again = daemon_factory(cfg.path).start()
    with again.client(KEY) as client:
        after = {i: _message(client, i) for i in ids}
        assert after == before
        assert after[ids[0]]["status"] == "delivered"
        logs = client.get("/messaging/logs/acme", params={"limit": 10})
        assert logs.status_code == 200, logs.text
        assert [item["id"] for item in logs.json()["items"]] == ids[::-1]
        replay = _send(client, texts[0], **{"Idempotency-Key": "pedido-1842"})
        assert replay.json()["id"] == ids[0], replay.text
        new = _send(client, "después del reinicio ✅").json()["id"]
        wait_until(lambda: _message(client, new)["status"] == "sent", timeout=30)
    # each once, byte for byte, the replay not at all
    sent = sorted(request["body"] for request in fake_gateway.sent)
    assert sent == sorted([*texts, "después del reinicio ✅"])


IN_FLIGHT = 8


def test_a_killed_node_s_messages_are_taken_back_by_the_next_within_30_s(
    tmp_path: Path,
    daemon_factory: Callable[..., Daemon],
    fake_gateway: HttpJsonGateway,
    platform: FakeServer,
    postgres_url: str,
) -> None:
    fake_gateway.delay = 60.0  # every call hangs: all of them are at the provider at the kill
    # a lease of 10 minutes: only the heartbeats can get them out in time
    cfg = _config(tmp_path, postgres_url, fake_gateway, platform.url, lease="10m", timeout="90s")
    daemon = daemon_factory(cfg.path).start()
    with daemon.client(KEY) as client:
        ids = [_send(client).json()["id"] for _ in range(IN_FLIGHT)]
    wait_until(lambda: len(fake_gateway.sent) >= IN_FLIGHT, timeout=30)
    daemon.kill()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT status, lease_node FROM messages").fetchall()
    assert {status for status, _ in rows} == {"sending"}
    assert len({node for _, node in rows}) == 1

    fake_gateway.delay = 0.0
    restarted = daemon_factory(cfg.path).start()
    with restarted.client(KEY) as client:
        # the dead node's heartbeat is 15 s old 15-20 s after the kill; the bound is generous
        # (a loaded CI machine) and still far inside the 10 minute lease
        wait_until(lambda: all(_message(client, i)["status"] == "sent" for i in ids), timeout=90)
    lines = [json.loads(line) for line in restarted.output().splitlines() if line.startswith("{")]
    taken = [
        line["count"] for line in lines if line["event"] == "store.dead_node_leases_taken_back"
    ]
    assert taken == [IN_FLIGHT], restarted.output()
    # each was sent once before the kill (its answer never recorded) and once after
    assert len(fake_gateway.sent) == 2 * IN_FLIGHT
