"""What every store does with a tenant's suppression list (SPEC section 9)."""

from __future__ import annotations

from pipecored.store import MessageStore
from tests.contract.conftest import StoreFactory

PHONE = "+56911111111"


async def test_suppress_is_per_tenant_and_channel_and_keeps_the_first_reason(
    store: MessageStore,
) -> None:
    assert await store.suppress("genda", "sms", PHONE, reason="STOP", now=10.0)
    assert not await store.suppress("genda", "sms", PHONE, reason="BAJA", now=20.0)

    assert await store.suppressed_among("genda", "sms", [PHONE]) == [PHONE]
    assert await store.suppressed_among("genda", "whatsapp", [PHONE]) == []
    assert await store.suppressed_among("tableflow", "sms", [PHONE]) == []
    [record] = await store.list_suppressions("genda", channel=None, after_seq=None, limit=10)
    assert (record.channel, record.address, record.reason, record.created_at) == (
        "sms",
        PHONE,
        "STOP",
        10.0,
    )


async def test_suppressed_among_names_every_suppressed_address_in_the_order_given(
    store: MessageStore,
) -> None:
    for address in ("b@ejemplo.cl", "josé@ejemplo.cl"):
        await store.suppress("genda", "email", address, reason="bounce", now=1.0)

    found = await store.suppressed_among(
        "genda", "email", ["josé@ejemplo.cl", "a@ejemplo.cl", "b@ejemplo.cl", "josé@ejemplo.cl"]
    )

    assert found == ["josé@ejemplo.cl", "b@ejemplo.cl"]
    assert await store.suppressed_among("genda", "email", []) == []


async def test_unsuppress_lifts_only_that_one(store: MessageStore) -> None:
    await store.suppress("genda", "sms", PHONE, reason=None, now=1.0)
    await store.suppress("genda", "whatsapp", PHONE, reason=None, now=1.0)

    assert await store.unsuppress("genda", "sms", PHONE)
    assert not await store.unsuppress("genda", "sms", PHONE)
    assert await store.suppressed_among("genda", "sms", [PHONE]) == []
    assert await store.suppressed_among("genda", "whatsapp", [PHONE]) == [PHONE]


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
        assert await reopened.suppressed_among("genda", "whatsapp", [PHONE]) == [PHONE]
    finally:
        await reopened.close()
