"""The behaviour every ``MessageStore`` promises, run against each implementation.

The ``store`` and ``new_store`` fixtures (``tests/contract/conftest.py``) give a fresh store of
each kind in ``STORE_FACTORIES``; a second implementation is tested by adding its factory there.
What is particular to one implementation (SQLite's group commit, WAL, pragmas, files) is tested
beside it, in ``tests/store/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace as dataclass_replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipecored.errors import StoreError
from pipecored.provider import InboundMessage, StatusEvent
from pipecored.store import (
    AppliedStatus,
    AttemptOutcome,
    Completed,
    IdempotencyClaim,
    IdempotencyConflict,
    LogFilter,
    MessageStore,
    NewMessage,
)
from pipecored.store.base import STATUS_RANK, moves_forward
from tests.contract.conftest import StoreFactory
from tests.contract.store_records import (
    TENANT,
    TEXT,
    claim_one,
    complete_after_early_events,
    new_message,
    outcome,
    outcome_fields,
    sent_message,
)

# -- lifecycle ----------------------------------------------------------------------------------


async def test_open_twice_is_refused(store: MessageStore) -> None:
    with pytest.raises(StoreError, match="open failed"):
        await store.open()


CALLS_AFTER_CLOSE: list[Any] = [
    pytest.param(lambda s: s.ping(), id="ping"),
    pytest.param(lambda s: s.accept(new_message(9)), id="accept"),
    pytest.param(lambda s: s.get("msg_x"), id="get"),
    pytest.param(lambda s: s.claim(now=1, limit=1, lease_seconds=1), id="claim"),
    pytest.param(lambda s: s.release("msg_x", "t"), id="release"),
    pytest.param(lambda s: s.next_due(), id="next_due"),
    pytest.param(
        lambda s: s.apply_status(TENANT, "twilio", StatusEvent(status="sent")), id="apply_status"
    ),
    pytest.param(
        lambda s: s.add_inbound(TENANT, "sms", "twilio", InboundMessage("a", "b", "c")),
        id="add_inbound",
    ),
    pytest.param(lambda s: s.requeue("msg_x", now=1), id="requeue"),
    pytest.param(lambda s: s.list_messages(TENANT, limit=1), id="list_messages"),
    pytest.param(lambda s: s.stats(TENANT), id="stats"),
    pytest.param(lambda s: s.queue_depth(now=1), id="queue_depth"),
    pytest.param(lambda s: s.purge_idempotency(now=1), id="purge_idempotency"),
]


@pytest.mark.parametrize("call", CALLS_AFTER_CLOSE)
async def test_methods_after_close_raise_store_error(
    new_store: StoreFactory, call: Callable[[MessageStore], Awaitable[object]]
) -> None:
    store = new_store()
    await store.open()
    await store.close()
    await store.close()  # a second close is harmless
    with pytest.raises(StoreError):
        await call(store)


# -- accept ---------------------------------------------------------------------------------------


async def test_accept_get_round_trip_is_byte_exact(store: MessageStore) -> None:
    message = NewMessage(
        id="msg_utf8",
        tenant_id=TENANT,
        channel="email",
        to=["ana@example.com", "luis@example.com"],
        sender="Peña <hola@example.com>",
        payload={"subject": TEXT, "html": f"<p>{TEXT}</p>"},
        created_at=1000.0,
    )
    result = await store.accept(message)
    assert not result.replayed
    assert result.record.status == "queued"
    got = await store.get("msg_utf8")
    assert got is not None
    assert got == result.record
    assert got.to == ["ana@example.com", "luis@example.com"]
    assert got.sender == "Peña <hola@example.com>"
    assert got.payload["subject"].encode() == TEXT.encode()
    assert (got.attempt_count, got.route_index, got.route_attempts) == (0, 0, 0)
    assert (got.not_before, got.lease_token, got.attempts) == (None, None, ())


async def test_accepted_messages_survive_reopen(new_store: StoreFactory) -> None:
    store = new_store()
    await store.open()
    await asyncio.gather(*(store.accept(new_message(i, body=TEXT)) for i in range(50)))
    await store.close()

    store = new_store()
    await store.open()
    try:
        records = await store.list_messages(TENANT, limit=100)
        assert len(records) == 50
        assert {r.payload["body"] for r in records} == {TEXT}
    finally:
        await store.close()


async def test_a_batch_of_accepts_returns_each_row_as_stored(store: MessageStore) -> None:
    # Concurrent plain accepts are inserted by one multi-row statement: each caller must still
    # get its own message's seq, and nothing else's.
    results = await asyncio.gather(
        *(store.accept(new_message(i, body=f"{TEXT} {i}")) for i in range(64))
    )
    for result in results:
        stored = await store.get(result.record.id)
        assert stored is not None
        assert (stored.seq, stored.payload) == (result.record.seq, result.record.payload)
    assert len({r.record.seq for r in results}) == 64


async def test_a_failing_accept_in_a_batch_fails_alone(store: MessageStore) -> None:
    await store.accept(new_message(0))
    # message 0 again (a duplicate id) in the middle of a batch: the multi-row insert fails, the
    # batch runs again job by job, and only the duplicate is refused
    outcomes = await asyncio.gather(
        *(store.accept(new_message(0 if i == 20 else i + 1000)) for i in range(40)),
        return_exceptions=True,
    )
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], StoreError)
    assert len(await store.list_messages(TENANT, limit=500)) == 40


async def test_accept_of_an_existing_id_names_the_operation(store: MessageStore) -> None:
    await store.accept(new_message(1, body=TEXT))
    with pytest.raises(StoreError, match=r"^accept failed") as caught:
        await store.accept(new_message(1, body=TEXT))
    assert TEXT not in str(caught.value)


# -- idempotency --------------------------------------------------------------------------------


def claim(
    key: str = "k1", request_hash: str = "h1", expires_at: float = 2000.0
) -> IdempotencyClaim:
    return IdempotencyClaim(key=key, request_hash=request_hash, expires_at=expires_at)


async def test_idempotency_replay(store: MessageStore) -> None:
    first = await store.accept(new_message(1), claim())
    again = await store.accept(new_message(2, created_at=1500.0), claim())
    assert again.replayed
    assert again.record.id == first.record.id
    assert await store.get("msg_test000002") is None


async def test_idempotency_conflict(store: MessageStore) -> None:
    await store.accept(new_message(1), claim())
    with pytest.raises(IdempotencyConflict) as caught:
        await store.accept(new_message(2), claim(request_hash="other"))
    assert caught.value.message_id == "msg_test000001"


async def test_idempotency_key_is_per_tenant(store: MessageStore) -> None:
    await store.accept(new_message(1), claim())
    other = await store.accept(new_message(2, tenant="other"), claim(request_hash="other"))
    assert not other.replayed


async def test_expired_idempotency_key_is_overwritten(store: MessageStore) -> None:
    await store.accept(new_message(1), claim(expires_at=1100.0))
    later = await store.accept(
        new_message(2, created_at=1100.0), claim(request_hash="h2", expires_at=3000.0)
    )
    assert not later.replayed
    replay = await store.accept(new_message(3, created_at=1200.0), claim(request_hash="h2"))
    assert replay.replayed
    assert replay.record.id == "msg_test000002"


async def test_conflict_rolls_back_only_its_own_job(store: MessageStore) -> None:
    await store.accept(new_message(1), claim())
    results = await asyncio.gather(
        store.accept(new_message(2)),
        store.accept(new_message(3), claim(request_hash="other")),
        store.accept(new_message(4), claim(key="k2")),
        return_exceptions=True,
    )
    assert isinstance(results[1], IdempotencyConflict)
    assert await store.get("msg_test000002") is not None
    assert await store.get("msg_test000003") is None
    assert await store.get("msg_test000004") is not None


async def test_purge_idempotency(store: MessageStore) -> None:
    await store.accept(new_message(1), claim("a", expires_at=1100.0))
    await store.accept(new_message(2), claim("b", expires_at=1200.0))
    await store.accept(new_message(3), claim("c", expires_at=1300.0))
    assert await store.purge_idempotency(now=1200.0) == 2
    assert await store.purge_idempotency(now=1200.0) == 0
    fresh = await store.accept(new_message(4, created_at=1150.0), claim("a", request_hash="x"))
    assert not fresh.replayed


# -- the queue ----------------------------------------------------------------------------------


async def test_claim_takes_oldest_first_and_sets_a_lease(store: MessageStore) -> None:
    for i in range(3):
        await store.accept(new_message(i))
    claimed = await store.claim(now=1000.0, limit=2, lease_seconds=30)
    assert [r.id for r in claimed] == ["msg_test000000", "msg_test000001"]
    assert all(r.status == "sending" and r.lease_token for r in claimed)
    assert claimed[0].lease_token != claimed[1].lease_token
    assert claimed[0].attempts == ()


async def test_claim_takes_what_has_been_due_longest_first(store: MessageStore) -> None:
    # seq order and due order disagree: one scheduled for 5000 comes first, then one waiting for
    # a retry at 1010, one accepted at 1005, and one whose lease ran out at 995
    await store.accept(dataclass_replace(new_message(0), not_before=5000.0, scheduled=True))
    await store.accept(new_message(1))
    retry = await claim_one(store)
    assert await store.complete(outcome(retry, "queued", not_before=1010.0))
    await store.accept(new_message(2, created_at=1005.0))
    await store.accept(new_message(3, created_at=990.0))
    [lost] = await store.claim(now=990.0, limit=1, lease_seconds=5)
    assert lost.id == "msg_test000003"

    order = []
    while claimed := await store.claim(now=1030.0, limit=1, lease_seconds=30):
        order += [r.id for r in claimed]
    assert order == ["msg_test000003", "msg_test000002", "msg_test000001"]
    assert await store.next_due() == 1060.0  # the first of the new leases


async def test_claim_respects_not_before(store: MessageStore) -> None:
    await store.accept(new_message(1))
    record = await claim_one(store)
    assert await store.complete(outcome(record, "queued", not_before=2000.0))
    assert await store.claim(now=1999.0, limit=10, lease_seconds=30) == []
    assert await store.next_due() == 2000.0
    again = await claim_one(store, now=2000.0)
    assert again.attempt_count == 1


async def test_expired_lease_is_reclaimed_and_old_token_refused(store: MessageStore) -> None:
    await store.accept(new_message(1))
    first = await claim_one(store, now=1000.0)
    assert await store.claim(now=1029.0, limit=10, lease_seconds=30) == []
    second = await claim_one(store, now=1031.0)
    assert second.lease_token != first.lease_token

    assert await store.complete(outcome(first, "sent", provider_message_id="SM1")) is None
    unchanged = await store.get(first.id)
    assert unchanged is not None
    assert (unchanged.status, unchanged.lease_token) == ("sending", second.lease_token)
    assert (unchanged.attempt_count, unchanged.attempts) == (0, ())
    assert unchanged.provider_message_id is None


async def test_concurrent_claims_never_share_a_message(store: MessageStore) -> None:
    await asyncio.gather(*(store.accept(new_message(i)) for i in range(100)))
    batches = await asyncio.gather(
        *(store.claim(now=1000.0, limit=15, lease_seconds=30) for _ in range(10))
    )
    ids = [r.id for batch in batches for r in batch]
    assert len(ids) == len(set(ids)) == 100


async def test_release_returns_a_message_to_the_queue(store: MessageStore) -> None:
    await store.accept(new_message(1))
    record = await claim_one(store)
    await store.release(record.id, "not-the-token")
    assert (await store.queue_depth(now=1000.0))[0] == 1
    await store.release(record.id, record.lease_token or "")
    got = await store.get(record.id)
    assert got is not None
    assert (got.status, got.lease_token, got.attempt_count) == ("queued", None, 0)
    assert (await claim_one(store)).id == record.id


async def test_complete_records_the_attempt_and_latency(store: MessageStore) -> None:
    await store.accept(new_message(1))
    record = await claim_one(store)
    assert await store.complete(
        outcome(record, "sent", provider="resend", provider_message_id="re_1", sent_at=1000.25)
    )
    got = await store.get(record.id)
    assert got is not None
    assert (got.status, got.provider, got.provider_message_id) == ("sent", "resend", "re_1")
    assert (got.sent_at, got.attempt_count, got.lease_token) == (1000.25, 1, None)
    assert [a.provider for a in got.attempts] == ["resend"]
    stats = await store.stats(TENANT)
    assert stats.latency_ms["p50"] == pytest.approx(250.0)


async def test_complete_without_an_attempt_does_not_count_one(store: MessageStore) -> None:
    await store.accept(new_message(1))
    record = await claim_one(store)
    assert await store.complete(
        outcome(record, "failed", attempt=False, error_code="expired", error_message="too old")
    )
    got = await store.get(record.id)
    assert got is not None
    assert (got.status, got.attempt_count, got.attempts) == ("failed", 0, ())
    assert (got.error_code, got.error_message) == ("expired", "too old")


async def test_queue_depth_and_next_due(store: MessageStore) -> None:
    assert await store.queue_depth(now=5000.0) == (0, 0.0)
    assert await store.next_due() is None
    await store.accept(new_message(1, created_at=1000.0))
    await store.accept(new_message(2, created_at=1010.0))
    assert await store.queue_depth(now=1100.0) == (2, 100.0)
    assert await store.next_due() == 1000.0

    first = await claim_one(store, now=1100.0)  # leased until 1130
    assert await store.next_due() == 1010.0
    second = await claim_one(store, now=1100.0)
    assert await store.next_due() == 1130.0
    assert await store.complete(outcome(first, "sent", provider_message_id="a"))
    assert await store.complete(outcome(second, "queued", not_before=1500.0))
    assert await store.queue_depth(now=1100.0) == (1, 90.0)
    assert await store.next_due() == 1500.0


async def test_claim_and_next_due_leave_excluded_channels_out(store: MessageStore) -> None:
    await store.accept(new_message(1, channel="sms", created_at=1000.0))
    await store.accept(new_message(2, channel="email", created_at=1010.0))
    await store.accept(new_message(3, tenant="other", channel="sms", created_at=1020.0))
    throttled = [(TENANT, "sms")]
    assert await store.next_due(exclude=throttled) == 1010.0
    assert await store.next_due(exclude=[*throttled, (TENANT, "email"), ("other", "sms")]) is None

    claimed = await store.claim(now=1100.0, limit=10, lease_seconds=30.0, exclude=throttled)
    assert [r.id for r in claimed] == ["msg_test000002", "msg_test000003"]
    assert await store.next_due(exclude=throttled) == 1130.0  # their leases
    assert await store.next_due() == 1000.0


# -- status events ------------------------------------------------------------------------------


async def test_webhook_delivered_during_the_call_stays_delivered(store: MessageStore) -> None:
    await store.accept(new_message(1))
    record = await claim_one(store)
    event = StatusEvent(status="delivered", message_id=record.id)
    assert await store.apply_status(TENANT, "twilio", event) == AppliedStatus(record.id, moved=True)
    assert await store.complete(outcome(record, "sent", provider_message_id="SM1"))
    got = await store.get(record.id)
    assert got is not None
    assert (got.status, got.provider_message_id, got.lease_token) == ("delivered", "SM1", None)
    assert got.attempt_count == 1
    assert got.sent_at is not None


@pytest.mark.parametrize(
    ("events", "final"),
    [
        pytest.param(["delivered", "read"], "read", id="in-order"),
        pytest.param(["read", "delivered"], "read", id="late-delivered"),
        pytest.param(["read", "sent"], "read", id="late-sent-after-read"),
        pytest.param(["read", "failed"], "read", id="failed-after-read-ignored"),
        pytest.param(["delivered", "failed"], "failed", id="bounce-after-delivered"),
        pytest.param(["failed", "delivered"], "failed", id="failed-is-final"),
    ],
)
async def test_status_events_only_move_forward(
    store: MessageStore, events: list[Any], final: str
) -> None:
    record = await sent_message(store, 1, "SM1")
    for status in events:
        event = StatusEvent(
            status=status, provider_message_id="SM1", error_code="30003", error_message="gone"
        )
        before = await store.get(record.id)
        assert before is not None
        applied = await store.apply_status(TENANT, "twilio", event)
        assert applied == AppliedStatus(record.id, moved=moves_forward(before.status, status))
    got = await store.get(record.id)
    assert got is not None
    assert got.status == final
    assert got.error_code == ("30003" if final == "failed" else None)


async def test_status_events_of_another_tenant_do_not_apply(store: MessageStore) -> None:
    record = await sent_message(store, 1, "SM1")
    by_our_id = StatusEvent(status="read", message_id=record.id)
    by_their_id = StatusEvent(status="read", provider_message_id="SM1")
    assert await store.apply_status("intruder", "twilio", by_our_id) is None
    assert await store.apply_status("intruder", "twilio", by_their_id) is None
    got = await store.get(record.id)
    assert got is not None
    assert got.status == "sent"


async def test_early_events_are_applied_when_the_provider_id_arrives(
    store: MessageStore,
) -> None:
    await complete_after_early_events(store)
    # The other tenant's event for the same provider id was kept for that tenant's message.
    await store.accept(new_message(2, tenant="other"))
    theirs = await claim_one(store)
    done = await store.complete(outcome(theirs, "sent", provider_message_id="SM1"))
    assert done == Completed(deferred=("read",))
    got = await store.get(theirs.id)
    assert got is not None
    assert got.status == "read"


# -- inbound and requeue ------------------------------------------------------------------------


async def test_inbound_is_logged_once_per_provider_id(store: MessageStore) -> None:
    inbound = InboundMessage(sender="+15550009999", recipient="+15550000001", body=TEXT)
    with_id = InboundMessage(
        sender="+15550009999", recipient="+15550000001", body=TEXT, provider_message_id="SMin"
    )
    first_id, created = await store.add_inbound(TENANT, "sms", "twilio", with_id)
    assert created
    assert await store.add_inbound(TENANT, "sms", "twilio", with_id) == (first_id, False)
    _, created_again = await store.add_inbound(TENANT, "sms", "twilio", inbound)
    assert created_again

    got = await store.get(first_id)
    assert got is not None
    assert first_id.startswith("msg_")
    assert (got.direction, got.status, got.to, got.sender) == (
        "inbound",
        "received",
        "+15550000001",
        "+15550009999",
    )
    assert got.body_preview == TEXT
    assert (
        len(await store.list_messages(TENANT, limit=10, where=LogFilter(direction="inbound"))) == 2
    )
    assert (await store.stats(TENANT)).total == 0


async def test_requeue_only_failed_outbound(store: MessageStore) -> None:
    await store.accept(new_message(1))
    record = await claim_one(store)
    failed = outcome(
        record,
        "failed",
        error_code="21211",
        error_message="invalid number",
    )
    assert await store.complete(
        AttemptOutcome(**{**outcome_fields(failed), "route_index": 1, "route_attempts": 3})
    )
    requeued = await store.requeue(record.id, now=2000.0)
    assert requeued is not None
    assert (requeued.status, requeued.route_index, requeued.route_attempts) == ("queued", 0, 0)
    assert (requeued.error_code, requeued.not_before, requeued.updated_at) == (None, None, 2000.0)
    assert len(requeued.attempts) == 1
    assert await store.requeue(record.id, now=2000.0) is None  # queued now, not failed
    assert await store.requeue("msg_unknown", now=2000.0) is None
    inbound_id, _ = await store.add_inbound(
        TENANT, "sms", "twilio", InboundMessage("+1", "+2", "hi")
    )
    assert await store.requeue(inbound_id, now=2000.0) is None


# -- the log ------------------------------------------------------------------------------------


async def test_list_messages_pages_and_filters(store: MessageStore) -> None:
    channels = ["sms", "email", "whatsapp", "sms", "email", "sms", "whatsapp"]
    for i, channel in enumerate(channels):
        await store.accept(new_message(i, channel=channel))
    await store.accept(new_message(99, tenant="other"))
    record = await claim_one(store)  # the oldest of all: msg_test000000 (sms)
    assert await store.complete(outcome(record, "sent", provider_message_id="x"))

    page1 = await store.list_messages(TENANT, limit=3)
    assert [r.id[-1] for r in page1] == ["6", "5", "4"]
    page2 = await store.list_messages(TENANT, limit=3, where=LogFilter(before_seq=page1[-1].seq))
    assert [r.id[-1] for r in page2] == ["3", "2", "1"]
    page3 = await store.list_messages(TENANT, limit=3, where=LogFilter(before_seq=page2[-1].seq))
    assert [r.id[-1] for r in page3] == ["0"]
    assert page3[0].attempts == ()

    sms = await store.list_messages(TENANT, limit=10, where=LogFilter(channel="sms"))
    assert [r.id[-1] for r in sms] == ["5", "3", "0"]
    sent = await store.list_messages(TENANT, limit=10, where=LogFilter(status="sent"))
    assert [r.id for r in sent] == ["msg_test000000"]
    combined = await store.list_messages(
        TENANT, limit=10, where=LogFilter(channel="sms", status="queued")
    )
    assert [r.id[-1] for r in combined] == ["5", "3"]
    assert await store.list_messages(TENANT, limit=10, where=LogFilter(direction="inbound")) == []


# -- stats --------------------------------------------------------------------------------------


async def test_stats_on_a_known_distribution(store: MessageStore) -> None:
    empty = await store.stats(TENANT)
    assert (empty.total, empty.delivery_rate) == (0, None)
    assert empty.latency_ms == {"p50": None, "p95": None, "p99": None}

    # latencies 1..100 ms on sms/twilio; 100 is delivered, 99 is read
    for i in range(1, 101):
        await store.accept(new_message(i, created_at=1000.0))
        record = await claim_one(store)
        assert await store.complete(
            outcome(record, "sent", provider_message_id=f"SM{i}", sent_at=1000.0 + i / 1000)
        )
    await store.apply_status(TENANT, "twilio", StatusEvent("delivered", "SM100"))
    await store.apply_status(TENANT, "twilio", StatusEvent("read", "SM99"))
    # an email that failed without any provider, and one still queued
    await store.accept(new_message(200, channel="email"))
    record = await claim_one(store)
    assert await store.complete(outcome(record, "failed", provider=None, attempt=False))
    await store.accept(new_message(201, channel="email"))
    await store.accept(new_message(300, tenant="other"))

    stats = await store.stats(TENANT)
    assert stats.total == 102
    assert stats.by_status == {"sent": 98, "delivered": 1, "read": 1, "failed": 1, "queued": 1}
    assert stats.by_channel == {"sms": 100, "email": 2}
    assert stats.by_provider == {"twilio": 100}
    assert stats.delivery_rate == pytest.approx(2 / 101)
    assert stats.latency_ms["p50"] == pytest.approx(50.0)
    assert stats.latency_ms["p95"] == pytest.approx(95.0)
    assert stats.latency_ms["p99"] == pytest.approx(99.0)


@pytest.mark.parametrize(
    "since",
    [
        pytest.param(7200.0, id="on-an-hour-boundary"),
        pytest.param(7300.0, id="inside-an-hour"),
    ],
)
async def test_stats_since(store: MessageStore, since: float) -> None:
    # old: created at 1000 with latency 500 ms; new: created at 7300..7309 with 1..10 ms
    await store.accept(new_message(0, created_at=1000.0))
    record = await claim_one(store, now=1000.0)
    assert await store.complete(outcome(record, "sent", provider_message_id="old", sent_at=1000.5))
    for i in range(1, 11):
        created = 7300.0 + i - 1
        await store.accept(new_message(i, channel="email", created_at=created))
        record = await claim_one(store, now=created)
        assert await store.complete(
            outcome(
                record,
                "sent",
                provider="resend",
                provider_message_id=f"n{i}",
                sent_at=created + i / 1000,
            )
        )
    await store.accept(new_message(11, channel="email", created_at=7299.0))  # just before 7300

    stats = await store.stats(TENANT, since=since)
    expected_queued = 1 if since <= 7299.0 else 0
    assert stats.total == 10 + expected_queued
    assert stats.by_channel == {"email": 10 + expected_queued}
    assert stats.by_provider == {"resend": 10}
    assert stats.latency_ms["p50"] == pytest.approx(5.0)
    assert stats.latency_ms["p99"] == pytest.approx(10.0)
    everything = await store.stats(TENANT)
    assert everything.total == 12
    assert everything.latency_ms["p99"] == pytest.approx(500.0)


async def test_stats_counts_match_the_messages(store: MessageStore) -> None:
    """The trigger-kept counts agree with a count of the log after every kind of change."""
    for i in range(30):
        await store.accept(
            new_message(i, channel=("sms", "email")[i % 2], created_at=1000.0 + i * 600)
        )
    for i, record in enumerate(await store.claim(now=1e6, limit=20, lease_seconds=30)):
        status = ("sent", "failed", "queued", "delivered")[i % 4]
        assert await store.complete(
            outcome(
                record, status, provider=("twilio", "resend")[i % 2], provider_message_id=f"p{i}"
            )
        )
    for i in range(0, 20, 3):
        await store.apply_status(TENANT, ("twilio", "resend")[i % 2], StatusEvent("read", f"p{i}"))
    for record in await store.list_messages(TENANT, limit=100, where=LogFilter(status="failed")):
        await store.requeue(record.id, now=1e6)

    for since in (None, 1000.0, 4000.0, 9000.0, 30000.0):
        stats = await store.stats(TENANT, since=since)
        log = [
            r
            for r in await store.list_messages(TENANT, limit=100)
            if since is None or r.created_at >= since
        ]
        assert stats.total == len(log)
        assert stats.by_status == _count(r.status for r in log)
        assert stats.by_channel == _count(r.channel for r in log)
        assert stats.by_provider == _count(r.provider for r in log if r.provider)


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


# -- the forward-only rule ----------------------------------------------------------------------

DELIVERY_STATUSES = ["sent", "delivered", "read", "failed"]


@given(st.lists(st.sampled_from(DELIVERY_STATUSES), max_size=12))
def test_forward_only_ends_at_the_highest_reachable_status(events: list[str]) -> None:
    status = "sending"
    for event in events:
        if moves_forward(status, event):
            status = event
    first_failed = events.index("failed") if "failed" in events else None
    first_read = events.index("read") if "read" in events else None
    if first_failed is not None and (first_read is None or first_failed < first_read):
        expected = "failed"
    else:
        expected = max(
            ["sending", *(e for e in events if e != "failed")], key=lambda s: STATUS_RANK[s]
        )
    assert status == expected
