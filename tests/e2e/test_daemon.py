"""A real ``pipecored serve`` process over loopback: the quickstart, crash and shutdown safety,
and a third-party plugin found through its entry point."""

from __future__ import annotations

import collections
import errno
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import (
    ConfigDir,
    Daemon,
    auth,
    default_daemon_settings,
    example_config,
    httpjson_channel,
    wait_until,
)
from tests.fakes.httpjson import HttpJsonGateway

ACME = "acme-key-0123456789"
SPANISH = "¿Confirmas tu reserva para mañana a las 20:00? 🍷\nResponde SÍ o NO — ¡gracias!"


def test_quickstart_on_the_example_config(
    tmp_path: Path, daemon_factory: Callable[..., Daemon]
) -> None:
    config = example_config(tmp_path / "config")
    daemon = daemon_factory(config).start()
    with daemon.client("demo-key") as client:
        sent = client.post("/messaging/send/whatsapp", json={"to": "+34600111222", "body": SPANISH})
        assert sent.status_code == 202, sent.text
        message_id = sent.json()["id"]
        message = wait_until(
            lambda: (
                (m := client.get(f"/messaging/messages/{message_id}").json())["status"]
                == "delivered"
                and m
            )
        )
        assert message["provider"] == "console"
        assert message["attempts"][0]["outcome"] == "success"
        logs = client.get("/messaging/logs/demo").json()
        assert [item["id"] for item in logs["items"]] == [message_id]
        stats = client.get("/messaging/stats/demo").json()
        assert stats["byStatus"] == {"delivered": 1}
        assert stats["deliveryRate"] == 1.0
    metrics = httpx.get(f"{daemon.url}/metrics").text
    assert 'pipecore_messages_accepted_total{channel="whatsapp",tenant="demo"} 1.0' in metrics
    assert daemon.stop() == 0
    # The console provider writes the message to the log, UTF-8 intact.
    assert SPANISH.split("\n")[0] in daemon.output()
    assert (config / "pipecored.db").exists()


def _backlog_config(tmp_path: Path, gateway: HttpJsonGateway, **delivery: object) -> ConfigDir:
    root = tmp_path / "config"
    (root / "tenants").mkdir(parents=True)
    cfg = ConfigDir(root)
    cfg.write_daemon(default_daemon_settings(tmp_path / "pipecored.db", **delivery))
    cfg.write_tenant(
        "acme",
        {"name": "Acme", "apiKeys": [ACME], "channels": {"sms": httpjson_channel(gateway.url)}},
    )
    return cfg


def _send_backlog(daemon: Daemon, count: int) -> list[str]:
    ids = []
    with daemon.client(ACME) as client:
        for i in range(count):
            r = client.post(
                "/messaging/send/sms", json={"to": "+34600111222", "body": f"{SPANISH} #{i}"}
            )
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
    return ids


def _delivered_ids(gateway: HttpJsonGateway) -> collections.Counter[str]:
    return collections.Counter(m["id"] for m in gateway.sent)


def test_kill_9_with_a_backlog_loses_nothing(
    tmp_path: Path, daemon_factory: Callable[..., Daemon], fake_gateway: HttpJsonGateway
) -> None:
    fake_gateway.delay = 0.05  # slow enough that the backlog is still there at the kill
    cfg = _backlog_config(tmp_path, fake_gateway, concurrency=8, lease="2s")
    daemon = daemon_factory(cfg.path).start()
    ids = _send_backlog(daemon, 300)
    wait_until(lambda: len(fake_gateway.sent) >= 40)
    daemon.kill()
    at_kill = len(_delivered_ids(fake_gateway))
    assert at_kill < len(ids), "the backlog was gone before the kill; the test proves nothing"

    fake_gateway.delay = 0.0
    daemon_factory(cfg.path, port=daemon.port).start()
    wait_until(lambda: set(_delivered_ids(fake_gateway)) >= set(ids), timeout=60)
    delivered = _delivered_ids(fake_gateway)
    lost = set(ids) - set(delivered)
    duplicated = sum(n - 1 for n in delivered.values())
    print(
        f"kill -9: {len(ids)} accepted, {at_kill} delivered before the kill, "
        f"{len(lost)} lost, {duplicated} delivered twice"
    )
    assert not lost
    # A call in flight at the kill may have reached the provider without its answer being
    # recorded; nothing else may be sent twice. At most `concurrency` calls were in flight.
    assert duplicated <= 8


def test_sigterm_with_a_backlog_loses_and_duplicates_nothing(
    tmp_path: Path, daemon_factory: Callable[..., Daemon], fake_gateway: HttpJsonGateway
) -> None:
    fake_gateway.delay = 0.05
    cfg = _backlog_config(tmp_path, fake_gateway, concurrency=8)
    daemon = daemon_factory(cfg.path).start()
    ids = _send_backlog(daemon, 200)
    wait_until(lambda: len(fake_gateway.sent) >= 20)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    at_stop = len(fake_gateway.sent)
    assert at_stop < len(ids), "the backlog was gone before SIGTERM; the test proves nothing"

    fake_gateway.delay = 0.0
    daemon_factory(cfg.path, port=daemon.port).start()
    wait_until(lambda: set(_delivered_ids(fake_gateway)) >= set(ids), timeout=60)
    delivered = _delivered_ids(fake_gateway)
    assert set(ids) <= set(delivered)
    assert all(n == 1 for n in delivered.values()), "a message was delivered twice"


def test_a_third_party_plugin_is_loaded_through_its_entry_point(
    httpjson_site: Path,
    config_dir: ConfigDir,
    daemon_factory: Callable[..., Daemon],
    fake_gateway: HttpJsonGateway,
) -> None:
    daemon = daemon_factory(config_dir.path)
    listing = subprocess.run(
        [sys.executable, "-m", "pipecored", "plugins"],
        env=daemon.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    row = next(line for line in listing.splitlines() if line.startswith("httpjson"))
    assert "pipecored-httpjson 1.0.0" in row
    assert "email,sms,whatsapp" in row
    for builtin in ("console", "twilio", "meta", "resend", "sendgrid"):
        assert any(line.startswith(builtin) for line in listing.splitlines()), builtin

    daemon.start()
    with daemon.client(ACME) as client:
        r = client.post("/messaging/send/sms", json={"to": "+34600111222", "body": SPANISH})
        assert r.status_code == 202
        wait_until(lambda: fake_gateway.sent)
    assert fake_gateway.sent[0]["body"] == SPANISH
    assert fake_gateway.server.requests[0].headers["authorization"].startswith("Bearer ")


def test_sends_keep_being_accepted_under_concurrency(
    config_dir: ConfigDir, daemon_factory: Callable[..., Daemon], fake_gateway: HttpJsonGateway
) -> None:
    import concurrent.futures

    daemon = daemon_factory(config_dir.path).start()

    def send(i: int) -> int:
        r = httpx.post(
            f"{daemon.url}/messaging/send/sms",
            json={"to": "+34600111222", "body": f"n{i}"},
            headers=auth(ACME),
            timeout=10,
        )
        return r.status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(send, range(200)))
    assert codes == [202] * 200
    # Once every message is sent, the daemon has nothing left to send: the count is final.
    with daemon.client(ACME) as client:
        wait_until(lambda: client.get("/messaging/stats/acme").json()["byStatus"] == {"sent": 200})
    assert len(fake_gateway.sent) == 200


def test_sigterm_answers_503_while_the_calls_in_flight_finish(
    tmp_path: Path, daemon_factory: Callable[..., Daemon], fake_gateway: HttpJsonGateway
) -> None:
    # docs/delivery.md: on SIGTERM new sends get 503 shutting_down at once, calls in flight
    # finish within server.shutdownGrace, and the process exits 0. The daemon keeps answering
    # while it drains, so a load balancer sees 503 (and /readyz 503) and moves on, rather than
    # a refused connection.
    call = 3.0  # the call in flight at the signal takes this long at the provider
    fake_gateway.delay = call
    cfg = _backlog_config(tmp_path, fake_gateway)
    settings = default_daemon_settings(tmp_path / "pipecored.db", timeout="20s")
    settings["server"] = {"shutdownGrace": "30s"}
    cfg.write_daemon(settings)
    daemon = daemon_factory(cfg.path).start()
    with daemon.client(ACME) as client:
        accepted = [_send(client, "in flight at the signal")]
    wait_until(lambda: fake_gateway.server.requests)
    called = time.monotonic()
    daemon.signal(signal.SIGTERM)

    # Until well before the call can end, every new connection is answered: 202 only for a
    # send that came before the signal landed, then 503 for sends and for readiness.
    answers: list[tuple[int, int]] = []
    while time.monotonic() < called + call - 1.0:
        sent = httpx.post(
            f"{daemon.url}/messaging/send/sms",
            json={"to": "+34600111222", "body": "during the drain"},
            headers=auth(ACME),
            timeout=10,
        )
        ready = httpx.get(f"{daemon.url}/readyz", timeout=10)
        if sent.status_code == 202:
            accepted.append(sent.json()["id"])
        else:
            assert sent.json()["error"]["code"] == "shutting_down", sent.text
            assert sent.headers["Retry-After"]
        answers.append((sent.status_code, ready.status_code))
        time.sleep(0.05)
    assert daemon.proc is not None and daemon.proc.poll() is None, "it did not wait for the call"
    refusing = answers.index((503, 503))
    assert set(answers[refusing:]) == {(503, 503)}, answers
    assert set(answers[:refusing]) <= {(202, 200)}, answers
    assert daemon.wait() == 0

    # The call in flight finished and was recorded; the next start sends the rest, once each.
    fake_gateway.delay = 0.0
    restarted = daemon_factory(cfg.path, port=daemon.port).start()
    with restarted.client(ACME) as client:
        first = client.get(f"/messaging/messages/{accepted[0]}").json()
        assert first["status"] == "sent", first
        assert [a["outcome"] for a in first["attempts"]] == ["success"]
    wait_until(lambda: set(_delivered_ids(fake_gateway)) >= set(accepted))
    assert all(n == 1 for n in _delivered_ids(fake_gateway).values())


def _send(client: httpx.Client, body: str) -> str:
    r = client.post("/messaging/send/sms", json={"to": "+34600111222", "body": body})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _raise_own_open_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:  # open, nothing to read
        return False
    except OSError as exc:  # reset (closed), or still connecting
        return exc.errno != errno.ENOTCONN


def test_idle_connections_are_closed_and_the_api_stays_reachable(
    config_dir: ConfigDir, daemon_factory: Callable[..., Daemon]
) -> None:
    # With the common limit of 1,024 descriptors, 1,100 connections that never send a request
    # made the API unreachable for as long as they stayed open.
    available = _raise_own_open_file_limit()
    daemon_limit = min(1024, (available - 200) // 2)
    daemon = daemon_factory(config_dir.path)
    daemon.open_files = daemon_limit
    daemon.start()
    idle: list[socket.socket] = []
    try:
        for _ in range(daemon_limit + daemon_limit // 12):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", daemon.port))
            idle.append(sock)

        def answers() -> bool:
            try:
                return httpx.get(f"{daemon.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout=30, interval=0.2)  # while they are all open or opening
        wait_until(lambda: all(_closed_by_peer(s) for s in idle), timeout=60, interval=0.5)
        wait_until(answers, timeout=30, interval=0.2)
        with daemon.client(ACME) as client:
            _send(client, "still here")
    finally:
        for sock in idle:
            sock.close()
    assert daemon.stop() == 0
