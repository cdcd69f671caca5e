"""The SQLite writer records the completes of one batch together (``_complete_many``): a fixed
number of statements for the batch, and each caller gets what a complete of its own would have
given it. Each test holds the writer on a job of its own so that the completes queue up behind
it and are taken as one batch, then compares with the same completes made one at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from pipecored.errors import StoreError
from pipecored.provider import StatusEvent
from pipecored.store import AttemptOutcome, Completed, Failover, MessageRecord
from pipecored.store.sqlite import SQLiteStore
from tests.conftest import eventually
from tests.contract.store_records import TENANT, MessageEvents, new_message, outcome


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStore, SQLiteStore]]:
    """Two stores: completes one at a time in the first, in one batch in the second."""
    opened = []
    for name in ("one_by_one", "batched"):
        store = SQLiteStore(str(tmp_path / f"{name}.db"))
        store.events = MessageEvents()
        await store.open()
        opened.append(store)
    yield opened[0], opened[1]
    for store in opened:
        await store.close()


async def _in_one_batch(
    store: SQLiteStore, calls: Sequence[Callable[[], Awaitable[Any]]]
) -> list[Any]:
    """Run ``calls`` at once while the writer is held, so that they queue up and are taken as
    one batch; what each returned or raised."""
    entered, gate = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        entered.set()
        gate.wait(10)

    holder = asyncio.ensure_future(store._write("hold", hold))
    assert await asyncio.to_thread(entered.wait, 10)
    commits = store.commits
    tasks = [asyncio.ensure_future(call()) for call in calls]
    await eventually(lambda: store._jobs.qsize() == len(calls))
    gate.set()
    await holder
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert store.commits == commits + 2  # the holder's, then the batch's
    return results


async def _scenario(store: SQLiteStore) -> tuple[list[AttemptOutcome], list[str]]:
    """Leased messages and the outcomes of their attempts, covering what a complete does."""
    for n in range(7):
        await store.accept(new_message(n))
    records = sorted(await store.claim(now=2000.0, limit=10, lease_seconds=600), key=lambda r: r.id)
    # callbacks that overtook the provider's answer for message 1 (its provider id SM1)
    for status in ("delivered", "read"):
        event = StatusEvent(status=status, provider_message_id="SM1")
        assert await store.apply_status(TENANT, "twilio", event) is None
    failover = Failover("twilio", "vonage", "circuit_open")
    outcomes = [
        outcome(records[0], "sent", provider_message_id="SM0", sent_at=2000.5),
        outcome(records[1], "sent", provider_message_id="SM1", sent_at=2000.5),
        outcome(records[2], "failed", error_code="invalid_number", error_message="¿número? 📵"),
        outcome(records[3], "queued", provider="vonage", not_before=2100.0, failovers=(failover,),
                error_code="timeout", error_message="no answer"),
        dataclasses.replace(outcome(records[4], "sent"), lease_token="taken-over"),
        outcome(records[5], "failed", attempt=False, error_code="expired"),
        outcome(records[6], "delivered", provider_message_id="SM6", sent_at=2000.5),
    ]  # fmt: skip
    return outcomes, [r.id for r in records]


def _comparable(record: MessageRecord | None) -> dict[str, Any]:
    """A message's stored state, without the clock of the complete itself (nor the random
    token of a lease still held)."""
    assert record is not None
    fields = dataclasses.asdict(record)
    fields.pop("updated_at")
    fields["lease_token"] = fields["lease_token"] is not None
    return fields


async def _events(store: SQLiteStore) -> list[tuple[str, dict[str, Any]]]:
    found = await store.list_events(TENANT, after_seq=None, limit=1000)
    return [(e.type, json.loads(e.body)["data"]) for e in found]


async def test_a_batch_of_completes_ends_as_the_same_completes_one_at_a_time(
    stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    one_by_one, batched = stores
    outcomes, ids = await _scenario(one_by_one)
    expected = [await one_by_one.complete(o) for o in outcomes]
    assert expected == [
        Completed(()), Completed(("delivered", "read")), Completed(()), Completed(()), None,
        Completed(()), Completed(()),
    ]  # fmt: skip

    outcomes, _ = await _scenario(batched)
    calls = [functools.partial(batched.complete, o) for o in outcomes]
    assert await _in_one_batch(batched, calls) == expected

    for message_id in ids:
        assert _comparable(await batched.get(message_id)) == _comparable(
            await one_by_one.get(message_id)
        )
    assert await _events(batched) == await _events(one_by_one)


async def test_events_are_built_from_the_message_as_stored(
    stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    """Events are built from the record in hand, not read back: that record must be the message
    as the complete stored it, but for the status the event reports."""
    _, store = stores
    outcomes, _ = await _scenario(store)
    assert isinstance(store.events, MessageEvents)
    store.events.records.clear()
    await _in_one_batch(store, [functools.partial(store.complete, o) for o in outcomes])
    built = store.events.records
    assert len(built) == 8  # sent; sent, delivered, read; failed; failover; failed; delivered
    for record in built:
        stored = await store.get(record.id)
        assert stored is not None
        assert dataclasses.replace(record, status=stored.status) == dataclasses.replace(
            stored, attempts=()
        )


async def test_a_message_completed_twice_in_one_batch_is_completed_once(
    stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    _, store = stores
    outcomes, _ = await _scenario(store)
    sent = outcomes[0]
    results = await _in_one_batch(store, [lambda: store.complete(sent)] * 2 + [
        lambda: store.complete(outcomes[6])
    ])  # fmt: skip
    assert results == [Completed(()), None, Completed(())]
    got = await store.get(sent.message_id)
    assert got is not None and got.attempt_count == 1 and len(got.attempts) == 1


async def test_a_complete_the_database_refuses_fails_alone(
    stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    """The batch is undone and run again job by job: only the faulty complete fails."""
    _, store = stores
    outcomes, _ = await _scenario(store)
    assert outcomes[2].attempt is not None
    faulty = dataclasses.replace(
        outcomes[2], attempt=dataclasses.replace(outcomes[2].attempt, provider=cast(Any, None))
    )  # attempts.provider is NOT NULL
    calls = [functools.partial(store.complete, o) for o in (outcomes[0], faulty, outcomes[6])]
    results = await _in_one_batch(store, calls)
    assert results[0] == results[2] == Completed(())
    assert isinstance(results[1], StoreError) and "complete failed" in str(results[1])
    kept = await store.get(faulty.message_id)
    assert kept is not None and kept.status == "sending" and kept.attempts == ()
