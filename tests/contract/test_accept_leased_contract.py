"""An accept under a lease: the message is stored already claimed, for the worker of the daemon
that accepted it (``DeliveryWorker.lease``), and from then on is a claimed message like any
other: completed with the lease's token, given back by ``release``, claimable by anyone once
the lease has run out, and given back when the store reopens. Run against each store."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from pipecored.store import Lease, MessageStore, NewMessage
from tests.contract.conftest import StoreFactory
from tests.contract.store_records import TENANT, claim_one, new_message, outcome
from tests.contract.test_store_contract import claim


def leased(n: int, token: str | None = None, until: float = 1030.0) -> NewMessage:
    return replace(new_message(n), lease=Lease(token=token or f"{n:032x}", until=until))


async def test_it_is_stored_sending_under_the_lease_and_no_claim_takes_it(
    store: MessageStore,
) -> None:
    result = await store.accept(leased(1))
    assert not result.replayed
    assert (result.record.status, result.record.lease_token) == ("sending", f"{1:032x}")
    got = await store.get("msg_test000001")
    assert got == result.record
    assert await store.claim(now=1029.0, limit=10, lease_seconds=30) == []
    assert await store.next_due() == 1030.0  # when the lease runs out
    assert await store.queue_depth(now=1000.0) == (1, 0.0)


async def test_the_accepting_worker_completes_it_with_the_lease_s_token(
    store: MessageStore,
) -> None:
    record = (await store.accept(leased(1))).record
    assert await store.complete(outcome(record, "sent", provider_message_id="SM1"))
    got = await store.get(record.id)
    assert got is not None
    assert (got.status, got.provider_message_id, got.lease_token) == ("sent", "SM1", None)
    assert got.attempt_count == 1


async def test_once_the_lease_runs_out_any_worker_claims_it_and_the_old_token_is_refused(
    store: MessageStore,
) -> None:
    first = (await store.accept(leased(1))).record
    second = await claim_one(store, now=1031.0)
    assert second.id == first.id
    assert second.lease_token != first.lease_token
    assert await store.complete(outcome(first, "sent", provider_message_id="SM1")) is None
    assert await store.complete(outcome(second, "sent", provider_message_id="SM2"))
    got = await store.get(first.id)
    assert got is not None
    assert (got.provider_message_id, got.attempt_count) == ("SM2", 1)


async def test_release_gives_it_back_to_the_queue(store: MessageStore) -> None:
    record = (await store.accept(leased(1))).record
    await store.release(record.id, record.lease_token or "")
    got = await store.get(record.id)
    assert got is not None
    assert (got.status, got.lease_token) == ("queued", None)
    assert (await claim_one(store)).id == record.id


async def test_leased_and_plain_accepts_in_one_batch_are_each_stored_as_asked(
    store: MessageStore,
) -> None:
    # concurrent plain accepts share one insert (each store's group commit)
    messages = [leased(i) if i % 2 else new_message(i) for i in range(20)]
    results = await asyncio.gather(*(store.accept(m) for m in messages))
    for message, result in zip(messages, results, strict=True):
        got = await store.get(message.id)
        assert got == result.record
        if message.lease is None:
            assert (got.status, got.lease_token) == ("queued", None)
        else:
            assert (got.status, got.lease_token) == ("sending", message.lease.token)
    claimed = await store.claim(now=1000.0, limit=100, lease_seconds=30)
    assert sorted(r.id for r in claimed) == sorted(m.id for m in messages if m.lease is None)


async def test_with_an_idempotency_key_the_first_is_leased_and_a_replay_returns_it(
    store: MessageStore,
) -> None:
    first = await store.accept(leased(1), claim())
    assert first.record.status == "sending"
    again = await store.accept(leased(2, token="b" * 32), claim())
    assert again.replayed
    assert (again.record.id, again.record.lease_token) == (first.record.id, f"{1:032x}")
    assert await store.get("msg_test000002") is None


async def test_a_reopened_store_gives_back_what_was_leased_at_accept(
    new_store: StoreFactory,
) -> None:
    # the daemon stopped (or died) between the accept and the call: the next start sends it
    store = new_store()
    await store.open()
    await store.accept(leased(1, until=1e12))
    await store.close()
    store = new_store()
    await store.open()
    try:
        (record,) = await store.list_messages(TENANT, limit=10)
        assert (record.status, record.lease_token) == ("queued", None)
        assert (await claim_one(store)).id == record.id
    finally:
        await store.close()
