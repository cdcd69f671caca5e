"""The store contract for scheduled sends and cancellation (SPEC section 7), run over every
store in STORE_FACTORIES like the rest of the contract suite."""

from __future__ import annotations

from dataclasses import replace

from pipecored.store import MessageStore
from tests.contract.store_records import new_message


async def test_a_scheduled_message_is_not_claimed_before_its_time(store: MessageStore) -> None:
    accepted = await store.accept(replace(new_message(1), not_before=2000.0, scheduled=True))
    assert accepted.record.status == "scheduled"
    assert accepted.record.not_before == 2000.0
    assert (await store.get(accepted.record.id)).status == "scheduled"  # type: ignore[union-attr]
    assert await store.claim(now=1999.0, limit=10, lease_seconds=60) == []
    assert await store.next_due() == 2000.0
    [claimed] = await store.claim(now=2000.0, limit=10, lease_seconds=60)
    assert claimed.id == accepted.record.id
    assert claimed.status == "sending"


async def test_a_held_queued_message_waits_for_its_not_before(store: MessageStore) -> None:
    accepted = await store.accept(replace(new_message(1), not_before=1500.0))
    assert accepted.record.status == "queued"
    assert await store.claim(now=1400.0, limit=10, lease_seconds=60) == []
    assert len(await store.claim(now=1500.0, limit=10, lease_seconds=60)) == 1


async def test_scheduled_messages_are_not_backlog(store: MessageStore) -> None:
    await store.accept(replace(new_message(1), not_before=5000.0, scheduled=True))
    assert await store.queue_depth(now=1000.0) == (0, 0.0)


async def test_cancel_takes_scheduled_and_queued_messages_only(store: MessageStore) -> None:
    sending = (await store.accept(new_message(3))).record
    [claimed] = await store.claim(now=1000.0, limit=1, lease_seconds=1e12)  # held throughout
    assert claimed.id == sending.id
    scheduled = (await store.accept(replace(new_message(1), not_before=9e9, scheduled=True))).record
    queued = (await store.accept(new_message(2))).record

    canceled = await store.cancel(scheduled.id, now=1001.0)
    assert canceled is not None and canceled.status == "canceled"
    assert (await store.cancel(queued.id, now=1001.0)) is not None
    assert await store.cancel(sending.id, now=1001.0) is None  # being sent: too late
    assert await store.cancel(scheduled.id, now=1002.0) is None  # already canceled
    assert await store.cancel("msg_nonesuch", now=1002.0) is None
    # a canceled message is never claimed, and no status moves it on
    assert await store.claim(now=9e9 + 1, limit=10, lease_seconds=60) == []
    assert (await store.get(scheduled.id)).status == "canceled"  # type: ignore[union-attr]
