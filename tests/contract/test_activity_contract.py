"""``MessageStore.activity``: a tenant's outbound messages per bucket of whole hours (the
console's charts), on every store of the contract suite."""

from __future__ import annotations

import pytest

from pipecored.provider import InboundMessage, StatusEvent
from pipecored.store import MessageStore
from pipecored.store.base import (
    ACTIVITY_EXACT_LATENCY,
    MAX_ACTIVITY_BUCKETS,
    ActivityBucket,
    activity_starts,
)
from tests.contract.store_records import TENANT, new_message, outcome

HOUR = 3600
DAY = 24 * HOUR
# an hour boundary that is also a day boundary: 2026-11-28T00:00:00Z
T0 = 1_795_824_000.0


async def _send(
    store: MessageStore,
    n: int,
    *,
    created_at: float,
    status: str = "sent",
    latency_ms: float | None = None,
    tenant: str = TENANT,
) -> None:
    """Accept message ``n`` at ``created_at`` and take it to ``status``; a sent message's
    provider accepted it ``latency_ms`` after it was accepted."""
    await store.accept(new_message(n, created_at=created_at, tenant=tenant))
    if status == "queued":
        return
    claimed = await store.claim(now=created_at, limit=1, lease_seconds=30)
    assert [r.id for r in claimed] == [f"msg_test{n:06d}"]
    record = claimed[0]
    if status == "failed":
        assert await store.complete(outcome(record, "failed", error_code="rejected"))
        return
    sent_at = created_at + (latency_ms or 0.0) / 1000
    pid = f"SM{n}"
    assert await store.complete(outcome(record, "sent", provider_message_id=pid, sent_at=sent_at))
    if status in ("delivered", "read"):
        event = StatusEvent(status=status, provider_message_id=pid)  # type: ignore[arg-type]
        assert await store.apply_status(tenant, "twilio", event)


def test_buckets_are_aligned_whole_hours() -> None:
    assert activity_starts(since=T0 + 10, until=T0 + 2 * HOUR, bucket_seconds=HOUR) == [
        T0,
        T0 + HOUR,
        T0 + 2 * HOUR,
    ]
    assert activity_starts(since=T0 + 5 * HOUR, until=T0 + DAY + 1, bucket_seconds=DAY) == [
        T0,
        T0 + DAY,
    ]
    assert activity_starts(since=T0 + HOUR, until=T0, bucket_seconds=HOUR) == []


@pytest.mark.parametrize(
    ("bucket", "span"),
    [
        pytest.param(0, HOUR, id="zero"),
        pytest.param(900, HOUR, id="quarter-hour"),
        pytest.param(HOUR + 1, HOUR, id="not-whole-hours"),
        pytest.param(HOUR, MAX_ACTIVITY_BUCKETS * HOUR, id="too-many-buckets"),
    ],
)
async def test_refuses_buckets_it_cannot_answer(
    store: MessageStore, bucket: int, span: int
) -> None:
    with pytest.raises(ValueError, match="bucket"):
        await store.activity(TENANT, since=T0, until=T0 + span, bucket_seconds=bucket)


async def test_no_messages_gives_empty_buckets(store: MessageStore) -> None:
    buckets = await store.activity(TENANT, since=T0, until=T0 + 3 * HOUR - 1, bucket_seconds=HOUR)
    assert buckets == [
        ActivityBucket(start=T0 + i * HOUR, accepted=0, sent=0, delivered=0, failed=0)
        for i in range(3)
    ]
    assert buckets[0].delivery_rate is None


async def test_counts_and_latency_per_bucket(store: MessageStore) -> None:
    # hour 0: 2 delivered (latency 100, 300), 1 read (200), 1 failed, 1 still queued
    await _send(store, 1, created_at=T0 + 10, status="delivered", latency_ms=100)
    await _send(store, 2, created_at=T0 + 20, status="delivered", latency_ms=300)
    await _send(store, 3, created_at=T0 + 30, status="read", latency_ms=200)
    await _send(store, 4, created_at=T0 + 40, status="failed")
    # hour 1: nothing; hour 2: one sent (latency 50) and another tenant's delivered message
    await _send(store, 6, created_at=T0 + 2 * HOUR + 5, status="sent", latency_ms=50)
    await _send(store, 7, created_at=T0 + 2 * HOUR + 6, status="delivered", tenant="other")
    # left in the queue (accepted last, so that no claim above takes it)
    await _send(store, 5, created_at=T0 + 50, status="queued")
    # inbound messages are not counted
    inbound = InboundMessage(
        sender="+15550000009", recipient="+15550000001", body="STOP", provider_message_id="IN1"
    )
    await store.add_inbound(TENANT, "sms", "twilio", inbound)

    buckets = await store.activity(TENANT, since=T0, until=T0 + 2 * HOUR + 60, bucket_seconds=HOUR)
    assert [b.start for b in buckets] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    first, empty, last = buckets
    assert (first.accepted, first.sent, first.delivered, first.failed) == (5, 0, 3, 1)
    assert first.delivery_rate == pytest.approx(3 / 4)
    # nearest rank over [100, 200, 300]: p50 the 2nd, p95 the 3rd
    assert first.latency_p50_ms == pytest.approx(200)
    assert first.latency_p95_ms == pytest.approx(300)
    assert not first.latency_sampled
    assert empty == ActivityBucket(start=T0 + HOUR, accepted=0, sent=0, delivered=0, failed=0)
    assert (last.accepted, last.sent, last.delivered, last.failed) == (1, 1, 0, 0)
    assert last.delivery_rate == 0.0
    assert last.latency_p50_ms == pytest.approx(50)

    # the whole day in one bucket: the same messages
    (day,) = await store.activity(TENANT, since=T0, until=T0 + DAY - 1, bucket_seconds=DAY)
    assert (day.start, day.accepted, day.sent, day.delivered, day.failed) == (T0, 6, 1, 3, 1)
    assert day.latency_p50_ms == pytest.approx(100)  # [50, 100, 200, 300]: the 2nd
    assert day.latency_p95_ms == pytest.approx(300)

    # a window that starts inside an hour answers that whole hour
    (whole,) = await store.activity(TENANT, since=T0 + 45, until=T0 + 46, bucket_seconds=HOUR)
    assert whole.accepted == 5


async def test_busy_bucket_latency_comes_from_a_sample(store: MessageStore) -> None:
    count = ACTIVITY_EXACT_LATENCY + 88
    for n in range(count):
        # spread over the hour; latency grows with the time of acceptance: 1 ms .. count ms
        await store.accept(new_message(n, created_at=T0 + n * HOUR / count))
    done = 0
    while done < count:
        claimed = await store.claim(now=T0 + HOUR, limit=100, lease_seconds=60)
        for record in claimed:
            n = int(record.id.removeprefix("msg_test"))
            sent_at = record.created_at + (n + 1) / 1000
            assert await store.complete(
                outcome(record, "sent", provider_message_id=f"SM{n}", sent_at=sent_at)
            )
        done += len(claimed)
        assert claimed
    (bucket,) = await store.activity(TENANT, since=T0, until=T0 + 1, bucket_seconds=HOUR)
    assert (bucket.accepted, bucket.sent) == (count, count)
    assert bucket.latency_sampled
    # the sample is spread over the hour, so its percentiles are near the true ones
    assert bucket.latency_p50_ms is not None and bucket.latency_p95_ms is not None
    assert abs(bucket.latency_p50_ms - count * 0.50) < count * 0.1
    assert abs(bucket.latency_p95_ms - count * 0.95) < count * 0.1
