"""What every store keeps of provider experiments (SPEC section 10): each message's arm, and
the per-arm results, hand-computed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipecored.provider import StatusEvent
from pipecored.store import MessageStore
from tests.contract.store_records import TENANT, claim_one, new_message, outcome


async def _through(store: MessageStore, n: int, arm: str, status: str, latency_s: float) -> None:
    message = replace(new_message(n, created_at=1000.0), experiment="split", experiment_arm=arm)
    accepted = await store.accept(message)
    assert (accepted.record.experiment, accepted.record.experiment_arm) == ("split", arm)
    if status == "queued":
        return
    record = await claim_one(store, now=1000.0)
    assert record.experiment_arm == arm
    done = "failed" if status == "failed" else "sent"
    await store.complete(
        outcome(record, done, provider_message_id=f"P{n}", sent_at=1000.0 + latency_s)
    )
    if status == "delivered":
        await store.apply_status(TENANT, "twilio", StatusEvent("delivered", f"P{n}"))


async def test_arms_are_kept_and_counted(store: MessageStore) -> None:
    plan = [
        ("a", "delivered", 0.1), ("a", "delivered", 0.2), ("a", "sent", 0.3),
        ("a", "failed", 0.0), ("b", "delivered", 1.0), ("b", "failed", 0.0),
        ("b", "queued", 0.0),
    ]  # fmt: skip
    for n, (arm, status, latency) in enumerate(plan):
        await _through(store, n, arm, status, latency)
    await store.accept(new_message(99))  # no experiment

    got = await store.experiment_results(TENANT)
    by_arm = {r.arm: r for r in got}
    assert set(by_arm) == {"a", "b"}
    a, b = by_arm["a"], by_arm["b"]
    assert (a.channel, a.experiment) == ("sms", "split")
    assert (a.messages, a.sent, a.delivered, a.failed) == (4, 1, 2, 1)
    assert (b.messages, b.sent, b.delivered, b.failed) == (3, 0, 1, 1)
    # a's latencies 100, 200, 300 ms: nearest rank p50 = 200, p95 = 300
    assert a.latency_p50_ms == pytest.approx(200.0)
    assert a.latency_p95_ms == pytest.approx(300.0)
    assert b.latency_p50_ms == pytest.approx(1000.0)
    fetched = await store.get("msg_test000004")
    assert fetched is not None and fetched.experiment_arm == "b"
    assert await store.experiment_results("someone_else") == []
