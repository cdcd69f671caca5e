"""A scheduled send through a real daemon: not sent before its time, sent after it, kept across
a restart in between; a canceled one is never sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import (
    ONE_TENANT_KEY,
    Daemon,
    one_tenant_config,
    wait_until,
)
from tests.fakes.httpjson import HttpJsonGateway

ACME = ONE_TENANT_KEY


def test_a_scheduled_send_survives_a_restart_and_goes_at_its_time(
    tmp_path: Path, daemon_factory: Callable[..., Daemon], fake_gateway: HttpJsonGateway
) -> None:
    cfg = one_tenant_config(tmp_path, fake_gateway.url)
    daemon = daemon_factory(cfg.path).start()
    send_at = datetime.now(UTC) + timedelta(seconds=3)
    with daemon.client(ACME) as client:
        kept = client.post(
            "/messaging/send/sms",
            json={
                "to": "+34600111222",
                "body": "Recordatorio: cita mañana 🦷",
                "sendAt": send_at.isoformat(),
            },
        )
        dropped = client.post(
            "/messaging/send/sms",
            json={"to": "+34600111222", "body": "cancelado", "sendAt": send_at.isoformat()},
        )
        assert kept.status_code == dropped.status_code == 202, (kept.text, dropped.text)
        canceled = client.post(f"/messaging/messages/{dropped.json()['id']}/cancel")
        assert canceled.status_code == 200, canceled.text
    assert daemon.stop() == 0
    assert fake_gateway.sent == []  # the daemon stopped before the time

    restarted = daemon_factory(cfg.path, port=daemon.port).start()
    with restarted.client(ACME) as client:
        message_id = kept.json()["id"]
        if datetime.now(UTC) < send_at - timedelta(milliseconds=200):
            assert client.get(f"/messaging/messages/{message_id}").json()["status"] == "scheduled"
            assert fake_gateway.sent == []
        wait_until(
            lambda: client.get(f"/messaging/messages/{message_id}").json()["status"] == "sent",
            timeout=30,
        )
        record = client.get(f"/messaging/messages/{message_id}").json()
    # the call started no earlier than the time asked for
    assert datetime.fromisoformat(record["attempts"][0]["startedAt"]) >= send_at - timedelta(
        milliseconds=1
    )
    assert [m["id"] for m in fake_gateway.sent] == [message_id]
    assert fake_gateway.sent[0]["body"] == "Recordatorio: cita mañana 🦷"
