"""CPU per store call, in one process, without HTTP: for A/B-ing a change to the SQLite store.

    python -m bench.store_micro [accept|complete|send] [--rounds 3]

Each round times N calls made by concurrent callers (as the daemon's requests and delivery
tasks make them) with ``time.process_time`` (every thread of the process: the event loop, the
writer, the reader pool) and prints CPU and wall time per call. Compare two trees by running
this in each, alternately; it asserts nothing and is not part of the benchmark's report.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator

from pipecored.events.source import TenantEvents
from pipecored.store import AttemptOutcome, AttemptRecord, MessageRecord, NewMessage
from pipecored.store.base import new_message_id
from pipecored.store.sqlite import SQLiteStore

N = 12_800
CALLERS = {"accept": 32, "complete": 64, "send": 32}
DATA = {"to": "+34600000000", "body": "Hola, tu pedido está listo 🍕"}


class _NoTenants:
    def tenant(self, tenant_id: str) -> None:
        return None


def _message(suppression_keys: tuple[str, ...] = ()) -> NewMessage:
    return NewMessage(
        id=new_message_id(),
        tenant_id="t00000",
        channel="sms",
        to=DATA["to"],
        sender=None,
        payload=DATA,
        created_at=time.time(),
        suppression_keys=suppression_keys,
    )


def _sent(record: MessageRecord) -> AttemptOutcome:
    now = time.time()
    assert record.lease_token is not None
    return AttemptOutcome(
        message_id=record.id,
        lease_token=record.lease_token,
        attempt=AttemptRecord("fake", now, "success", 201, None, None, 1.0),
        status="sent",
        provider="fake",
        route_index=0,
        route_attempts=1,
        provider_message_id="pm_" + record.id,
        sent_at=now,
    )


async def _calls(store: SQLiteStore, kind: str) -> Iterator[Callable[[], Awaitable[object]]]:
    """N calls of ``kind``, with what they need already in the store."""
    if kind == "accept":
        return (lambda: store.accept(_message()) for _ in range(N))
    if kind == "send":  # what an accepted send asks of the store: the write, which checks
        return (lambda: store.accept(_message((DATA["to"],))) for _ in range(N))
    await asyncio.gather(*(store.accept(_message()) for _ in range(N)))
    claimed: list[MessageRecord] = []
    while len(claimed) < N:
        claimed += await store.claim(now=time.time() + 1, limit=128, lease_seconds=600)
    return (functools.partial(store.complete, _sent(r)) for r in claimed)


async def _round(store: SQLiteStore, kind: str) -> tuple[float, float]:
    calls = await _calls(store, kind)
    gc.collect()

    async def caller() -> None:
        for call in calls:  # the callers share one iterator
            await call()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CALLERS[kind])))
    return (time.process_time() - cpu) / N * 1e6, (time.perf_counter() - wall) / N * 1e6


async def main(kind: str, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(os.path.join(tmp, "micro.db"))
        store.events = TenantEvents(lambda: _NoTenants())  # type: ignore[arg-type, return-value]
        await store.open()
        for i in range(200):  # a tenant with suppressions, none of them the one checked
            await store.suppress("t00000", "sms", f"+3461{i:07d}", reason="stop", now=0.0)
        gc.collect()
        gc.freeze()
        try:
            for n in range(rounds):
                cpu, wall = await _round(store, kind)
                print(f"{kind} round {n}: {cpu:.1f} us CPU, {wall:.1f} us wall per call")
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=sorted(CALLERS))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.kind, args.rounds))
