"""A provider outage is waited out, not turned into failures (SPEC section 3): with the default
attempt settings, messages queued during a 45 s outage of a channel's only provider, or of a
provider and its fallback, all go out once the providers are back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ConfigDir, Daemon, default_daemon_settings, httpjson_channel, wait_until
from tests.fakes.httpjson import HttpJsonGateway

ALONE = "alone-key-0123456789"
PAIR = "pair-key-0123456789"
OUTAGE = 45.0
COUNT = 20


def test_a_45_second_outage_fails_nothing_and_everything_goes_out_after(
    tmp_path: Path, daemon_factory: Callable[..., Daemon]
) -> None:
    only, primary, fallback = (HttpJsonGateway().start() for _ in range(3))
    try:
        root = tmp_path / "config"
        (root / "tenants").mkdir(parents=True)
        cfg = ConfigDir(root)
        # the shipped defaults: maxAttempts 6, backoff 1 s .. 5 m, circuit 5 failures / 30 s
        cfg.write_daemon(
            default_daemon_settings(
                tmp_path / "pipecored.db", retryBackoff={"initial": "1s", "max": "5m"}
            )
        )
        cfg.write_tenant(
            "alone",
            {"name": "Alone", "apiKeys": [ALONE], "channels": {"sms": httpjson_channel(only.url)}},
        )
        pair = httpjson_channel(primary.url)
        pair["fallbacks"] = [httpjson_channel(fallback.url)]
        cfg.write_tenant("pair", {"name": "Pair", "apiKeys": [PAIR], "channels": {"sms": pair}})
        for fake in (only, primary, fallback):
            fake.fail_next(503, times=10_000)
        daemon = daemon_factory(cfg.path).start()

        ids: dict[str, list[str]] = {ALONE: [], PAIR: []}
        outage_ends = time.monotonic() + OUTAGE
        for key in (ALONE, PAIR):
            with daemon.client(key) as client:
                for i in range(COUNT):
                    response = client.post(
                        "/messaging/send/sms", json={"to": "+34600111222", "body": f"¡Hola! #{i}"}
                    )
                    assert response.status_code == 202, response.text
                    ids[key].append(response.json()["id"])

        def statuses() -> dict[str, str]:
            found = {}
            for key, sent in ids.items():
                with daemon.client(key) as client:
                    for message_id in sent:
                        found[message_id] = client.get(f"/messaging/messages/{message_id}").json()[
                            "status"
                        ]
            return found

        while time.monotonic() < outage_ends:
            assert "failed" not in statuses().values()
            time.sleep(5)
        for fake in (only, primary, fallback):
            fake.failures.clear()

        # The circuits' trial calls come within their 30 s cooldown and the backoffs in flight
        # end: a generous bound on the recovery, not a speed check.
        wait_until(lambda: set(statuses().values()) == {"sent"}, timeout=240, interval=1.0)
        failed_attempts = 0
        for key, sent in ids.items():
            with daemon.client(key) as client:
                for message_id in sent:
                    attempts = client.get(f"/messaging/messages/{message_id}").json()["attempts"]
                    outcomes = [a["outcome"] for a in attempts]
                    # the outage's attempts (none while a circuit was open), then one success
                    assert outcomes[-1] == "success", outcomes
                    assert set(outcomes[:-1]) <= {"retryable_error"}, outcomes
                    failed_attempts += len(outcomes) - 1
        # the outage was met: at least one circuit's worth of consecutive failures (how many
        # more depends on how the calls interleave with the circuits opening)
        assert failed_attempts >= 5
    finally:
        for fake in (only, primary, fallback):
            fake.stop()
