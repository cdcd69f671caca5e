"""What every store does for the daemons that share it (SPEC section 12): a rate limit's
reservations and one-time claims. On SQLite one daemon owns the file and keeps these in
memory; on PostgreSQL every node goes through the database: the same answers either way."""

from __future__ import annotations

import pytest

from pipecored.store import MessageStore


async def test_reservations_follow_the_rate_and_burst(store: MessageStore) -> None:
    waits = [
        await store.reserve_rate("acme/sms", per_second=5.0, burst=2, now=100.0) for _ in range(4)
    ]
    assert waits == pytest.approx([0.0, 0.0, 0.2, 0.4])
    # another key is another limit
    assert await store.reserve_rate("acme/email", per_second=5.0, burst=1, now=100.0) == 0.0
    # time refills it
    assert await store.reserve_rate("acme/sms", per_second=5.0, burst=2, now=101.0) == 0.0


async def test_a_claim_is_held_until_it_expires(store: MessageStore) -> None:
    assert await store.claim_once("alert:x", until=160.0, now=100.0)
    assert not await store.claim_once("alert:x", until=170.0, now=110.0)
    assert await store.claim_once("alert:y", until=170.0, now=110.0)
    assert await store.claim_once("alert:x", until=230.0, now=170.0)
    assert not await store.claim_once("alert:x", until=240.0, now=180.0)
