"""``storeRetention`` on PostgreSQL: finished messages (with their attempts and counts) and
events no endpoint still waits for are deleted once older than the retention, in batches; a
message still to send, a recent one and an event with a delivery pending are kept."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipecored.store import DeliveryResult, NewEvent
from pipecored.store.postgres import PostgresStore
from tests.contract.store_records import TENANT, new_message, sent_message

DAY = 86400.0
NOW = 200 * DAY
OLD = 10 * DAY  # 190 days before NOW
RECENT = 150 * DAY  # 50 days before NOW
HOOK = "https://platform.example/hooks/pipecore"


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(postgres_url, min_connections=1, max_connections=2, retention=90 * DAY)
    await s.open()
    yield s
    await s.close()


def _event(n: int, created_at: float, *endpoints: str) -> NewEvent:
    return NewEvent(
        id=f"evt_{n:04d}",
        tenant_id=TENANT,
        type="provider.down",
        body='{"aviso": "caída ⚠️"}'.encode(),
        created_at=created_at,
        endpoints=endpoints,
    )


async def test_what_is_past_the_retention_goes_in_batches_and_the_rest_stays(
    store: PostgresStore,
) -> None:
    for n in (1, 2, 3):
        await sent_message(store, n, f"SM{n}", created_at=OLD + n)
    recent = await sent_message(store, 5, "SM5", created_at=RECENT)
    await store.accept(new_message(4, created_at=OLD))  # accepted long ago, still to send
    assert (await store.stats(TENANT)).by_status == {"sent": 4, "queued": 1}

    await store.add_event(_event(1, OLD))  # no endpoint: kept only for listing
    await store.add_event(_event(2, OLD, HOOK))  # delivered below
    await store.add_event(_event(3, OLD, HOOK))  # its delivery still pending: kept
    await store.add_event(_event(4, RECENT))
    claimed = await store.claim_event_deliveries(
        now=OLD + 10, limit=1, lease_seconds=30, per_endpoint=1
    )
    assert [d.event_id for d in claimed] == ["evt_0002"]
    await store.finish_event_delivery(
        DeliveryResult("evt_0002", HOOK, True, 204, None, None, finished_at=OLD + 11)
    )

    assert await store.prune(now=NOW, batch=2) == (3, 2)

    kept = await store.list_messages(TENANT, limit=10)
    assert [m.id for m in kept] == ["msg_test000004", "msg_test000005"]
    assert (await store.stats(TENANT)).by_status == {"sent": 1, "queued": 1}
    got = await store.get(recent.id)
    assert got is not None
    assert len(got.attempts) == 1
    events = await store.list_events(TENANT, after_seq=None, limit=10)
    assert [e.id for e in events] == ["evt_0003", "evt_0004"]
    assert events[0].body == '{"aviso": "caída ⚠️"}'.encode()
    # nothing left to prune; the queued message is sent later, as if nothing happened
    assert await store.prune(now=NOW, batch=2) == (0, 0)
    claimed_message = await store.claim(now=NOW, limit=5, lease_seconds=30)
    assert [m.id for m in claimed_message] == ["msg_test000004"]


async def test_without_a_retention_nothing_is_deleted(postgres_url: str) -> None:
    store = PostgresStore(postgres_url, min_connections=1, max_connections=2)
    await store.open()
    try:
        await sent_message(store, 1, "SM1", created_at=OLD)
        await store.add_event(_event(1, OLD))
        assert await store.prune(now=NOW) == (0, 0)
        assert len(await store.list_messages(TENANT, limit=10)) == 1
        assert len(await store.list_events(TENANT, after_seq=None, limit=10)) == 1
    finally:
        await store.close()
