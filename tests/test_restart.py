"""A restarted daemon takes back at once what its killed process had claimed, and a second daemon
on the same SQLite file is refused: one owner per file is what makes the first safe."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    ONE_TENANT_KEY,
    ConfigDir,
    Daemon,
    one_tenant_config,
    wait_until,
)
from tests.fakes.httpjson import HttpJsonGateway

ACME = ONE_TENANT_KEY
TEXT = "Tu pedido sale ya 🛵 ¡gracias!"
IN_FLIGHT = 16


def _config(tmp_path: Path, gateway: HttpJsonGateway) -> ConfigDir:
    # the default lease (120 s): what the restart must not wait for
    return one_tenant_config(tmp_path, gateway.url, concurrency=IN_FLIGHT, timeout="90s")


def _statuses(daemon: Daemon, ids: list[str]) -> list[str]:
    with daemon.client(ACME) as client:
        return [client.get(f"/messaging/messages/{i}").json()["status"] for i in ids]


def test_a_restart_sends_what_the_killed_process_had_in_flight_at_once(
    tmp_path: Path, daemon_factory: Callable[..., Daemon], fake_gateway: HttpJsonGateway
) -> None:
    fake_gateway.delay = 60.0  # every call hangs: all of them are in flight at the kill
    cfg = _config(tmp_path, fake_gateway)
    daemon = daemon_factory(cfg.path).start()
    with daemon.client(ACME) as client:
        ids = [
            client.post("/messaging/send/sms", json={"to": "+34600111222", "body": TEXT}).json()[
                "id"
            ]
            for _ in range(IN_FLIGHT)
        ]
    wait_until(lambda: len(fake_gateway.sent) >= IN_FLIGHT, timeout=30)
    daemon.kill()
    assert set(_statuses_from_store_file(cfg)) == {"sending"}

    fake_gateway.delay = 0.0
    restarted = daemon_factory(cfg.path, port=daemon.port).start()
    # A generous bound that is still far inside the 120 s lease the messages were claimed with:
    # only taking them back at start gets them out before it.
    wait_until(lambda: set(_statuses(restarted, ids)) == {"sent"}, timeout=60)
    lines = [json.loads(line) for line in restarted.output().splitlines() if line.startswith("{")]
    taken = [line["count"] for line in lines if line["event"] == "store.leases_taken_back"]
    assert taken == [IN_FLIGHT], restarted.output()
    # each was sent once before the kill (its answer never recorded) and once after
    assert len(fake_gateway.sent) == 2 * IN_FLIGHT


def _statuses_from_store_file(cfg: ConfigDir) -> list[str]:
    conn = sqlite3.connect(cfg.path.parent / "pipecored.db")
    try:
        return [row[0] for row in conn.execute("SELECT status FROM messages")]
    finally:
        conn.close()


def test_a_second_daemon_on_the_same_store_file_exits_with_one_clear_line(
    tmp_path: Path, daemon_factory: Callable[..., Daemon], fake_gateway: HttpJsonGateway
) -> None:
    cfg = _config(tmp_path, fake_gateway)
    first = daemon_factory(cfg.path).start()
    second = daemon_factory(cfg.path)
    with pytest.raises(RuntimeError, match=r"daemon exited with [1-9]") as refused:
        second.start()
    output = second.output()
    assert "another pipecored daemon is using" in output, output
    assert "Traceback" not in output, output
    assert str(refused.value)
    # the first one is unharmed
    with first.client(ACME) as client:
        response = client.post("/messaging/send/sms", json={"to": "+34600111222", "body": TEXT})
        assert response.status_code == 202, response.text
    assert httpx.get(f"{first.url}/readyz").status_code == 200
