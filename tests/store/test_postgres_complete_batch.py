"""The PostgreSQL store's group commit of completes: outcomes that arrive while earlier ones are
written are completed together, in one transaction of a constant number of statements, and each
caller still gets what a complete of its own would have given it.

COMPLETE_WRITERS batches are written at once: of calls made together, the first ones are each
written alone and the rest together, so a test that checks a batch puts fillers before it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
import pytest

from pipecored.errors import StoreError
from pipecored.provider import StatusEvent
from pipecored.store import AttemptOutcome, Completed, MessageRecord
from pipecored.store.postgres import PostgresStore
from pipecored.store.postgres.store import COMPLETE_WRITERS
from tests.contract.store_records import TENANT, MessageEvents, new_message, outcome


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(postgres_url, min_connections=1, max_connections=4)
    s.events = MessageEvents()
    await s.open()
    yield s
    await s.close()


async def _leased(store: PostgresStore, count: int) -> list[MessageRecord]:
    await asyncio.gather(*(store.accept(new_message(n)) for n in range(count)))
    records = await store.claim(now=2000.0, limit=count, lease_seconds=600)
    assert len(records) == count
    return sorted(records, key=lambda r: r.id)


async def _complete_at_once(store: PostgresStore, outcomes: Sequence[AttemptOutcome]) -> list[Any]:
    """What each of ``outcomes``, completed at once, returned or raised."""
    return list(
        await asyncio.gather(*(store.complete(o) for o in outcomes), return_exceptions=True)
    )


async def _get(store: PostgresStore, message_id: str) -> MessageRecord:
    record = await store.get(message_id)
    assert record is not None
    return record


async def _events_by_message(store: PostgresStore) -> dict[str, list[tuple[str, str, Any]]]:
    """Each message's events in the events API's order: (type, status, error_code)."""
    found: dict[str, list[tuple[str, str, Any]]] = {}
    for event in await store.list_events(TENANT, after_seq=None, limit=10_000):
        data = json.loads(event.body)["data"]
        found.setdefault(data["id"], []).append((event.type, data["status"], data["error_code"]))
    return found


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


async def test_many_concurrent_completes_all_land_with_their_attempts_and_events(
    store: PostgresStore, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = await _leased(store, 200)
    statements = _watch_statements(monkeypatch)
    sent = [outcome(r, "sent", provider_message_id=f"SM{r.id}") for r in records]

    results = await _complete_at_once(store, sent)

    assert results == [Completed(())] * 200
    locks = [sql for _, sql in statements if "(id, lease_token) IN" in sql]
    assert 2 < len(locks) < 200  # written in batches, not one by one
    for record in records[::37]:
        got = await _get(store, record.id)
        assert (got.status, got.attempt_count, got.provider_message_id, got.lease_token) == (
            "sent",
            1,
            f"SM{record.id}",
            None,
        )
        assert [a.outcome for a in got.attempts] == ["success"]
    assert _count(postgres_url, "SELECT count(*) FROM attempts") == 200
    assert _count(postgres_url, "SELECT count(*) FROM messages WHERE latency_ms IS NULL") == 0
    events = await _events_by_message(store)
    assert events == {r.id: [("message.sent", "sent", None)] for r in records}
    assert _count(postgres_url, "SELECT count(*) FROM outbox_deliveries") == 200


async def test_a_nul_byte_fails_its_own_complete_alone(
    store: PostgresStore, postgres_url: str
) -> None:
    # PostgreSQL text cannot hold a NUL: the batch is refused, completed again one by one
    records = await _leased(store, 10)
    outcomes = [outcome(r, "sent") for r in records[:9]]
    bad = outcome(records[9], "failed", error_code="x", error_message="bad\x00byte")

    results = await _complete_at_once(store, [*outcomes, bad])

    assert results[:9] == [Completed(())] * 9
    assert isinstance(results[9], StoreError) and "complete failed" in str(results[9])
    kept = await _get(store, records[9].id)
    assert (kept.status, kept.lease_token) == ("sending", bad.lease_token)
    assert _count(postgres_url, "SELECT count(*) FROM attempts") == 9
    assert sorted(await _events_by_message(store)) == [r.id for r in records[:9]]
    # still leased: its outcome, made storable, is written
    assert await store.complete(dataclasses.replace(bad, error_message="bad byte")) == Completed()


async def test_a_lost_lease_is_none_while_the_rest_of_its_batch_completes(
    store: PostgresStore, postgres_url: str
) -> None:
    records = await _leased(store, 6)
    with psycopg.connect(postgres_url) as conn:  # another node took message 4 over
        conn.execute(
            "UPDATE messages SET lease_token = 'another-node' WHERE id = %s", (records[4].id,)
        )

    results = await _complete_at_once(store, [outcome(r, "sent") for r in records])

    assert results == [Completed(())] * 4 + [None, Completed(())]
    lost = await _get(store, records[4].id)
    assert (lost.status, lost.lease_token, lost.attempt_count, lost.attempts) == (
        "sending",
        "another-node",
        0,
        (),
    )
    assert records[4].id not in await _events_by_message(store)


async def test_callbacks_held_for_messages_of_a_batch_are_applied_after_it(
    store: PostgresStore, postgres_url: str
) -> None:
    records = await _leased(store, 6)
    held = {
        2: [StatusEvent("failed", "SM2", error_code="30006", error_message="Landline")],
        3: [StatusEvent("delivered", "SM3")],
        4: [StatusEvent("delivered", "SM4"), StatusEvent("read", "SM4")],
        5: [StatusEvent("sent", "SM5")],  # no further than the answer: moves nothing
    }
    for callbacks in held.values():
        for event in callbacks:  # the receipts overtake the provider's answers
            assert await store.apply_status(TENANT, "twilio", event) is None

    results = await _complete_at_once(
        store, [outcome(r, "sent", provider_message_id=f"SM{n}") for n, r in enumerate(records)]
    )

    assert results == [
        Completed(()),
        Completed(()),
        Completed(("failed",)),
        Completed(("delivered",)),
        Completed(("delivered", "read")),
        Completed(()),
    ]
    assert [(m.status, m.error_code) for m in [await _get(store, r.id) for r in records]] == [
        ("sent", None),
        ("sent", None),
        ("failed", "30006"),
        ("delivered", None),
        ("read", None),
        ("sent", None),
    ]
    events = await _events_by_message(store)
    assert [events[r.id] for r in records] == [
        [("message.sent", "sent", None)],
        [("message.sent", "sent", None)],
        # built from the message as the callbacks left it, at each status it passed
        [("message.sent", "sent", "30006"), ("message.failed", "failed", "30006")],
        [("message.sent", "sent", None), ("message.delivered", "delivered", None)],
        [
            ("message.sent", "sent", None),
            ("message.delivered", "delivered", None),
            ("message.read", "read", None),
        ],
        [("message.sent", "sent", None)],
    ]
    assert _count(postgres_url, "SELECT count(*) FROM pending_events") == 0


async def test_one_message_twice_in_a_batch_completes_once_as_one_after_the_other(
    store: PostgresStore, postgres_url: str
) -> None:
    records = await _leased(store, COMPLETE_WRITERS + 1)
    fillers = [outcome(r, "sent") for r in records[:COMPLETE_WRITERS]]
    twice = outcome(records[-1], "sent")

    results = await _complete_at_once(store, [*fillers, twice, twice])

    assert results == [Completed(())] * COMPLETE_WRITERS + [Completed(()), None]
    got = await _get(store, twice.message_id)
    assert (got.status, got.attempt_count, len(got.attempts)) == ("sent", 1, 1)
    assert (await _events_by_message(store))[twice.message_id] == [("message.sent", "sent", None)]


async def test_one_message_in_two_batches_at_once_completes_once(store: PostgresStore) -> None:
    [record] = await _leased(store, 1)
    twice = outcome(record, "sent")

    results = await _complete_at_once(store, [twice] * COMPLETE_WRITERS)

    assert sorted(results, key=lambda r: r is None) == [Completed(())] + [None] * (
        COMPLETE_WRITERS - 1
    )
    got = await _get(store, record.id)
    assert (got.attempt_count, len(got.attempts)) == (1, 1)


async def test_closing_writes_the_completes_already_made(postgres_url: str) -> None:
    store = PostgresStore(postgres_url, min_connections=1, max_connections=4)
    await store.open()
    records = await _leased(store, 20)
    calls = [asyncio.create_task(store.complete(outcome(r, "sent"))) for r in records]
    await asyncio.sleep(0)  # every call is queued, most not yet written
    await store.close()  # would put the messages still leased back in the queue

    assert [c.result() for c in calls] == [Completed(())] * 20
    assert _count(postgres_url, "SELECT count(*) FROM messages WHERE status = 'sent'") == 20


async def test_a_batch_takes_the_same_statements_whatever_its_size(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the group commit's flush, called directly: a batch of 1, then one of 50
    records = await _leased(store, 51)
    statements = _watch_statements(monkeypatch)
    by_size = []
    for batch in (records[:1], records[1:]):
        statements.clear()
        outcomes = [outcome(r, "sent", provider_message_id=f"SM{r.id}") for r in batch]
        assert await store._complete_many(outcomes) == [Completed(())] * len(batch)
        # the batch's statements: those this task ran (not the store's background loops')
        by_size.append([sql for task, sql in statements if task is asyncio.current_task()])

    # lock, attempts, messages, held callbacks, events, deliveries (and BEGIN, COMMIT)
    assert len(by_size[0]) == 6
    assert by_size[1] == by_size[0]


def _watch_statements(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, str]]:
    """A list that every statement run from now on is added to, with the task that ran it
    (BEGIN and COMMIT are not among them)."""
    seen: list[tuple[Any, str]] = []
    execute = psycopg.AsyncCursor.execute

    async def watched(cur: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((asyncio.current_task(), str(query)))
        return await execute(cur, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", watched)
    return seen
