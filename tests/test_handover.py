"""A send due now, with a delivery slot free, is stored already claimed and handed to the worker
in memory (``DeliveryWorker.lease``/``take``): no claim of the store ever returns it. Anything
else (a scheduled send, every slot busy) waits in the queue for a claim, as before."""

from __future__ import annotations

import time
from typing import Any

import httpx

from pipecored.delivery import HANDOVER_BELOW
from pipecored.gateway import Gateway
from pipecored.store import MessageRecord
from tests.conftest import auth, eventually
from tests.fakes.httpjson import HttpJsonGateway

ACME = "acme-key-0123456789"


def count_claims(gateway: Gateway) -> list[str]:
    """The ids every claim of the store returns, from now on (the store's own claim, observed)."""
    claimed: list[str] = []
    store = gateway.store
    claim = store.claim

    async def observed(**kwargs: Any) -> list[MessageRecord]:
        records = await claim(**kwargs)
        claimed.extend(r.id for r in records)
        return records

    store.claim = observed  # type: ignore[method-assign]
    return claimed


async def send(client: httpx.AsyncClient, **extra: Any) -> str:
    r = await client.post(
        "/messaging/send/sms",
        json={"to": "+34600111222", "body": "Hola, ¿mañana? 🍷", **extra},
        headers=auth(ACME),
    )
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"  # the 202 says accepted (SPEC section 5)
    return str(r.json()["id"])


async def status(client: httpx.AsyncClient, message_id: str) -> str:
    r = await client.get(f"/messaging/messages/{message_id}", headers=auth(ACME))
    return str(r.json()["status"])


async def sent(client: httpx.AsyncClient, ids: list[str]) -> bool:
    return all([await status(client, i) == "sent" for i in ids])


async def test_a_send_with_a_free_slot_is_handed_over_without_a_claim(
    app_client: tuple[httpx.AsyncClient, Gateway], fake_gateway: HttpJsonGateway
) -> None:
    client, gateway = app_client
    claimed = count_claims(gateway)
    ids = []
    for _ in range(5):  # a daemon with nothing in flight, five times
        ids.append(await send(client))
        await eventually(lambda: sent(client, ids))
    assert len(fake_gateway.sent) == 5
    assert not set(claimed) & set(ids)


async def test_a_scheduled_send_waits_in_the_queue_for_a_claim(
    app_client: tuple[httpx.AsyncClient, Gateway], fake_gateway: HttpJsonGateway
) -> None:
    client, gateway = app_client
    claimed = count_claims(gateway)
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    message_id = await send(client, sendAt=soon)
    assert await status(client, message_id) == "scheduled"
    await eventually(lambda: sent(client, [message_id]))
    assert claimed.count(message_id) == 1


async def test_with_every_slot_busy_a_send_is_queued_and_claimed_when_one_frees(
    app_client_factory: Any, fake_gateway: HttpJsonGateway
) -> None:
    async with app_client_factory({"concurrency": 1}) as (client, gateway):
        claimed = count_claims(gateway)
        release = fake_gateway.hold_next()
        first = await send(client)
        await eventually(lambda: len(fake_gateway.requests) == 1)  # the only slot is busy
        second = await send(client)
        assert await status(client, second) == "queued"
        release.set()
        await eventually(lambda: sent(client, [first, second]))
        assert claimed == [second]


async def test_a_busy_worker_is_not_handed_more_the_claims_take_them_together(
    app_client: tuple[httpx.AsyncClient, Gateway], fake_gateway: HttpJsonGateway
) -> None:
    # handing every message of a loaded daemon over spread its completes over more write
    # transactions: from HANDOVER_BELOW calls in flight, sends are queued and claimed
    client, gateway = app_client
    claimed = count_claims(gateway)
    holds = [fake_gateway.hold_next() for _ in range(HANDOVER_BELOW)]
    first = [await send(client) for _ in range(HANDOVER_BELOW)]
    await eventually(lambda: len(fake_gateway.requests) == HANDOVER_BELOW)
    later = [await send(client) for _ in range(3)]
    for hold in holds:
        hold.set()
    await eventually(lambda: sent(client, first + later))
    assert not set(claimed) & set(first)
    assert sorted(set(claimed) & set(later)) == sorted(later)
