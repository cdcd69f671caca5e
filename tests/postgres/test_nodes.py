"""Nodes sharing a PostgreSQL database: a node whose heartbeat is 15 s old is dead and the next
node to look puts its leased messages back in the queue; a node that leaves puts back what it
still held; nothing another live node holds is touched."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

import psycopg

from pipecored.errors import StoreError
from pipecored.store.postgres import PostgresStore
from pipecored.store.postgres.store import NODE_DEAD_SECONDS
from tests.contract.store_records import new_message


def _store(url: str) -> PostgresStore:
    return PostgresStore(url, min_connections=1, max_connections=2)


def _rows(url: str) -> list[tuple[str, str, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, status, lease_node FROM messages ORDER BY seq").fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


async def test_a_silent_node_s_messages_go_back_and_a_live_node_s_stay(postgres_url: str) -> None:
    dead, alive = _store(postgres_url), _store(postgres_url)
    await dead.open()
    await alive.open()
    now = time.time()
    for n in (1, 2, 3):
        await dead.accept(new_message(n, created_at=now))
    await dead.claim(now=now, limit=2, lease_seconds=600)
    await alive.accept(new_message(4, created_at=now))
    [held] = await alive.claim(now=now, limit=1, lease_seconds=600)
    assert held.id == "msg_test000003"
    # ``dead`` stops beating (as after kill -9: no close, its row stays)
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            "UPDATE nodes SET heartbeat_at = %s WHERE node_id = %s",
            (now - NODE_DEAD_SECONDS - 1, dead.node_id),
        )

    third = _store(postgres_url)
    await third.open()  # the next node to look takes them back, at its start
    assert third.taken_back == 2
    assert _rows(postgres_url) == [
        ("msg_test000001", "queued", None),
        ("msg_test000002", "queued", None),
        ("msg_test000003", "sending", alive.node_id),
        ("msg_test000004", "queued", None),
    ]
    again = await third.claim(now=now, limit=5, lease_seconds=30)
    assert [m.id for m in again] == ["msg_test000001", "msg_test000002", "msg_test000004"]
    for store in (third, alive, dead):  # ``dead`` holds nothing any more: closing it is a no-op
        await store.close()


async def test_a_node_that_leaves_puts_back_what_it_still_held(postgres_url: str) -> None:
    leaving, staying = _store(postgres_url), _store(postgres_url)
    await leaving.open()
    await staying.open()
    now = time.time()
    await leaving.accept(new_message(1, created_at=now))
    await leaving.claim(now=now, limit=1, lease_seconds=600)  # never released
    await leaving.close()
    assert _rows(postgres_url) == [("msg_test000001", "queued", None)]
    [claimed] = await staying.claim(now=now, limit=1, lease_seconds=30)
    assert claimed.id == "msg_test000001"
    await staying.close()


async def test_an_accept_on_one_node_wakes_the_other_nodes_workers(postgres_url: str) -> None:
    idle, busy = _store(postgres_url), _store(postgres_url)
    await idle.open()
    await busy.open()
    woken = asyncio.Event()
    idle.on_work(woken.set)
    try:
        # the listener connects in the background: accept until one wakes it (LISTEN/NOTIFY
        # only tells listeners already there), then it is the accept that did it
        n = 0
        while not woken.is_set():
            n += 1
            await busy.accept(new_message(n, created_at=time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=1)
        woken.clear()
        await busy.accept(new_message(n + 1, created_at=time.time()))
        await asyncio.wait_for(woken.wait(), timeout=30)
    finally:
        await idle.close()
        await busy.close()


async def test_accepts_are_written_together_and_a_bad_one_fails_alone(postgres_url: str) -> None:
    # Ten accepts at once: the first ones each start a write, the rest wait and are written in
    # one statement. The last has a NUL byte in its sender, which PostgreSQL text cannot hold:
    # its batch is written again one by one, so it fails alone and the others are stored.
    store = _store(postgres_url)
    await store.open()
    try:
        messages = [new_message(n, created_at=time.time()) for n in range(9)]
        bad = dataclasses.replace(new_message(9), sender="pipe\x00cored")
        results = await asyncio.gather(
            *(store.accept(m) for m in [*messages, bad]), return_exceptions=True
        )
        assert isinstance(results[9], StoreError) and "accept failed" in str(results[9])
        accepted = [r for r in results[:9] if not isinstance(r, BaseException)]
        assert [r.record.id for r in accepted] == [m.id for m in messages]
        assert len({r.record.seq for r in accepted}) == 9
        # concurrent accepts commit in no promised order: the set stored, each once
        stored = [(i, s) for i, s, _ in _rows(postgres_url)]
        assert sorted(stored) == [(m.id, "queued") for m in messages]
        for result in accepted:
            got = await store.get(result.record.id)
            assert got is not None and got.seq == result.record.seq
    finally:
        await store.close()
