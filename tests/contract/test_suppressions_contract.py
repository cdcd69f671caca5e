"""What every store does with a tenant's suppression list (SPEC section 9)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from pipecored.store import (
    AcceptResult,
    IdempotencyClaim,
    MessageStore,
    NewMessage,
    RecipientsSuppressed,
)
from tests.contract.conftest import StoreFactory
from tests.contract.store_records import new_message, suppressed_among

PHONE = "+56911111111"


async def test_suppress_is_per_tenant_and_channel_and_keeps_the_first_reason(
    store: MessageStore,
) -> None:
    assert await store.suppress("genda", "sms", PHONE, reason="STOP", now=10.0)
    assert not await store.suppress("genda", "sms", PHONE, reason="BAJA", now=20.0)

    assert await suppressed_among(store, "genda", "sms", [PHONE]) == [PHONE]
    assert await suppressed_among(store, "genda", "whatsapp", [PHONE]) == []
    assert await suppressed_among(store, "tableflow", "sms", [PHONE]) == []
    [record] = await store.list_suppressions("genda", channel=None, after_seq=None, limit=10)
    assert (record.channel, record.address, record.reason, record.created_at) == (
        "sms",
        PHONE,
        "STOP",
        10.0,
    )


async def test_a_refusal_names_every_suppressed_address_once_in_the_order_given(
    store: MessageStore,
) -> None:
    for address in ("b@ejemplo.cl", "josé@ejemplo.cl"):
        await store.suppress("genda", "email", address, reason="bounce", now=1.0)

    send = _to(
        1, "josé@ejemplo.cl", "a@ejemplo.cl", "b@ejemplo.cl", "josé@ejemplo.cl", channel="email"
    )
    with pytest.raises(RecipientsSuppressed) as refused:
        await store.accept(send)

    assert refused.value.keys == ["josé@ejemplo.cl", "b@ejemplo.cl"]
    accepted = await store.accept(_to(2, channel="email"))  # nobody to check
    assert accepted.record.status == "queued"


async def test_unsuppress_lifts_only_that_one(store: MessageStore) -> None:
    await store.suppress("genda", "sms", PHONE, reason=None, now=1.0)
    await store.suppress("genda", "whatsapp", PHONE, reason=None, now=1.0)

    assert await store.unsuppress("genda", "sms", PHONE)
    assert not await store.unsuppress("genda", "sms", PHONE)
    assert await suppressed_among(store, "genda", "sms", [PHONE]) == []
    assert await suppressed_among(store, "genda", "whatsapp", [PHONE]) == [PHONE]


async def test_the_list_pages_oldest_first_by_cursor_and_filters_by_channel(
    store: MessageStore,
) -> None:
    for n in range(5):
        await store.suppress("genda", "sms" if n % 2 else "email", f"addr{n}", reason=None, now=n)
    await store.suppress("tableflow", "sms", "other", reason=None, now=9.0)

    first = await store.list_suppressions("genda", channel=None, after_seq=None, limit=2)
    rest = await store.list_suppressions("genda", channel=None, after_seq=first[-1].seq, limit=10)
    sms = await store.list_suppressions("genda", channel="sms", after_seq=None, limit=10)

    assert [r.address for r in first + rest] == [f"addr{n}" for n in range(5)]
    assert [r.address for r in sms] == ["addr1", "addr3"]


async def test_suppressions_survive_a_reopen(new_store: StoreFactory) -> None:
    first = new_store()
    await first.open()
    await first.suppress("genda", "whatsapp", PHONE, reason="PARAR", now=1.0)
    await first.close()

    reopened = new_store()
    await reopened.open()
    try:
        assert await suppressed_among(reopened, "genda", "whatsapp", [PHONE]) == [PHONE]
    finally:
        await reopened.close()


# -- an accept refuses suppressed recipients in its own write -----------------------------------


def _to(n: int, *keys: str, tenant: str = "genda", channel: str = "sms") -> NewMessage:
    return replace(
        new_message(n, tenant=tenant, channel=channel),
        to=list(keys),
        suppression_keys=tuple(keys),
    )


async def test_an_accept_naming_a_suppressed_recipient_is_refused_and_nothing_is_stored(
    store: MessageStore,
) -> None:
    other = "+56922222222"
    await store.suppress("genda", "sms", PHONE, reason="STOP", now=1.0)
    await store.suppress("genda", "sms", "+56933333333", reason="STOP", now=1.0)

    with pytest.raises(RecipientsSuppressed) as refused:
        await store.accept(_to(1, "+56933333333", other, PHONE))

    assert refused.value.keys == ["+56933333333", PHONE]  # in the message's order
    assert await store.get("msg_test000001") is None
    assert await store.queue_depth(now=1000.0) == (0, 0.0)
    # the same recipients on another channel or for another tenant are not suppressed
    assert (await store.accept(_to(2, PHONE, channel="whatsapp"))).record.status == "queued"
    assert (await store.accept(_to(3, PHONE, tenant="tableflow"))).record.status == "queued"
    assert (await store.accept(_to(4, other))).record.status == "queued"


async def test_accepts_written_together_refuse_only_those_with_a_suppressed_recipient(
    store: MessageStore,
) -> None:
    await store.suppress("genda", "sms", PHONE, reason="STOP", now=1.0)
    await store.suppress("tableflow", "email", "ana@ejemplo.cl", reason="bounce", now=1.0)
    sends = [
        _to(n, PHONE if n % 3 == 0 else f"+569{n:08d}", tenant="genda") for n in range(1, 31)
    ] + [
        _to(100 + n, "ana@ejemplo.cl" if n % 2 else f"b{n}@ejemplo.cl", tenant="tableflow",
            channel="email")
        for n in range(1, 11)
    ]  # fmt: skip

    results = await asyncio.gather(*(store.accept(m) for m in sends), return_exceptions=True)

    for message, result in zip(sends, results, strict=True):
        suppressed = PHONE in message.suppression_keys or "ana@ejemplo.cl" in message.to
        stored = await store.get(message.id)
        if suppressed:
            assert isinstance(result, RecipientsSuppressed), message.id
            assert result.keys == list(message.suppression_keys)
            assert stored is None
        else:
            assert isinstance(result, AcceptResult), (message.id, result)
            assert stored is not None and stored.status == "queued"


async def test_a_refused_accept_does_not_take_its_idempotency_key(store: MessageStore) -> None:
    await store.suppress("genda", "sms", PHONE, reason="STOP", now=1.0)
    key = IdempotencyClaim(key="k1", request_hash="h1", expires_at=5000.0)

    with pytest.raises(RecipientsSuppressed):
        await store.accept(_to(1, PHONE), key)

    assert await store.unsuppress("genda", "sms", PHONE)
    accepted = await store.accept(_to(2, PHONE), key)
    assert not accepted.replayed
    assert accepted.record.id == "msg_test000002"


async def test_the_next_accept_sees_a_suppression_added_or_lifted_at_once(
    store: MessageStore,
) -> None:
    for n in range(3):
        assert (await store.accept(_to(10 * n + 1, PHONE))).record.status == "queued"
        await store.suppress("genda", "sms", PHONE, reason="stop", now=1000.0)
        with pytest.raises(RecipientsSuppressed):
            await store.accept(_to(10 * n + 2, PHONE))
        assert await store.unsuppress("genda", "sms", PHONE)
