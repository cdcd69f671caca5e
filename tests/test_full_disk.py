"""A full disk while a provider call is in flight: the call's result is kept and written when
the disk is back, so the message is not sent twice; meanwhile the daemon says it is not ready
and claims nothing new."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import (
    ONE_TENANT_KEY,
    Daemon,
    one_tenant_config,
    wait_until,
)
from tests.fakes.httpjson import HttpJsonGateway

ACME = ONE_TENANT_KEY


def test_a_call_that_succeeded_during_a_full_disk_is_recorded_once_the_disk_is_back(
    tmp_path: Path, daemon_factory: Callable[..., Daemon], fake_gateway: HttpJsonGateway
) -> None:
    # a short lease: without keeping the result, the message would be claimed and sent again
    # as soon as the disk is back
    cfg = one_tenant_config(tmp_path, fake_gateway.url, lease="1s", timeout="10s")
    daemon = daemon_factory(cfg.path).start()
    assert daemon.proc is not None
    db = tmp_path / "pipecored.db"
    fake_gateway.delay = 1.5
    with daemon.client(ACME) as client:
        sent = client.post("/messaging/send/sms", json={"to": "+34600111222", "body": "¡Listo! ✅"})
        assert sent.status_code == 202, sent.text
        message_id = sent.json()["id"]
        wait_until(lambda: fake_gateway.sent, timeout=10)
        # The disk fills while the provider is answering: writes past this size fail (EFBIG).
        largest = max(db.stat().st_size, Path(f"{db}-wal").stat().st_size)
        resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (largest, resource.RLIM_INFINITY))
        wait_until(lambda: "delivery.complete_failed" in daemon.output(), timeout=15)
        not_ready = httpx.get(f"{daemon.url}/readyz")
        assert not_ready.status_code == 503, not_ready.text
        assert not_ready.json()["checks"]["delivery"] is False
        # well past the 1 s lease, with the disk still full: were the result dropped, the
        # message would be due again the moment the disk is back
        time.sleep(3)
        resource.prlimit(
            daemon.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )
        wait_until(
            lambda: client.get(f"/messaging/messages/{message_id}").json()["status"] == "sent",
            timeout=20,
        )
        wait_until(lambda: httpx.get(f"{daemon.url}/readyz").status_code == 200, timeout=20)
        # one more message goes through, and the first was never sent again
        fake_gateway.delay = 0.0
        after = client.post("/messaging/send/sms", json={"to": "+34600111222", "body": "otro"})
        assert after.status_code == 202
        wait_until(lambda: len(fake_gateway.sent) >= 2, timeout=10)
    assert [m["id"] for m in fake_gateway.sent].count(message_id) == 1
    assert daemon.stop() == 0
