"""What every store does with the events outbox (SPEC section 8): each change writes its events
in its own transaction, and deliveries are claimed (leased), finished and listed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from pipecored.provider import InboundMessage, StatusEvent
from pipecored.store import (
    DeliveryResult,
    Failover,
    MessageRecord,
    MessageStore,
    NewEvent,
)
from tests.contract.conftest import StoreFactory
from tests.contract.store_records import (
    TENANT,
    TEXT,
    claim_one,
    new_message,
    outcome,
    suppressed_among,
)

HOOK = "https://app.example/hooks"
OTHER_HOOK = "https://other.example/hooks"


class Recording:
    """An EventSource for the contract: a body naming what the store passed, every event to
    ``endpoints`` (none for tenant "quiet")."""

    def __init__(self, endpoints: tuple[str, ...] = (HOOK,)) -> None:
        self.endpoints = endpoints
        self.count = 0

    def _event(
        self, tenant_id: str, event_type: str, data: Mapping[str, Any], now: float
    ) -> NewEvent:
        self.count += 1
        body = json.dumps({"type": event_type, "data": dict(data)}, ensure_ascii=False)
        return NewEvent(
            id=f"evt_{self.count:04d}",
            tenant_id=tenant_id,
            type=event_type,
            body=body.encode(),
            created_at=now,
            endpoints=() if tenant_id == "quiet" else self.endpoints,
        )

    def message_event(
        self,
        event_type: str,
        record: MessageRecord,
        *,
        now: float,
        extra: Mapping[str, Any] | None = None,
    ) -> NewEvent:
        data = {"id": record.id, "status": record.status, "body": record.body_preview}
        return self._event(record.tenant_id, event_type, {**data, **(extra or {})}, now)

    def tenant_event(
        self, tenant_id: str, event_type: str, data: Mapping[str, Any], *, now: float
    ) -> NewEvent:
        return self._event(tenant_id, event_type, data, now)


@pytest.fixture
async def events_store(new_store: StoreFactory) -> Any:
    store = new_store()
    store.events = Recording()
    await store.open()
    yield store
    await store.close()


async def _events(store: MessageStore, tenant: str = TENANT) -> list[tuple[str, dict[str, Any]]]:
    listed = await store.list_events(tenant, after_seq=None, limit=100)
    return [(e.type, json.loads(e.body)["data"]) for e in listed]


async def _sent(store: MessageStore, n: int = 1, **fields: Any) -> MessageRecord:
    await store.accept(new_message(n))
    record = await claim_one(store)
    done = await store.complete(outcome(record, "sent", provider_message_id=f"SM{n}", **fields))
    assert done is not None
    return record


async def test_a_change_writes_its_event_with_a_pending_delivery_per_endpoint(
    events_store: MessageStore,
) -> None:
    events_store.events = Recording((HOOK, OTHER_HOOK))
    await _sent(events_store)

    [event] = await events_store.list_events(TENANT, after_seq=None, limit=10)
    assert event.type == "message.sent"
    assert json.loads(event.body)["data"]["status"] == "sent"
    assert [(d.endpoint, d.state, d.attempts) for d in event.deliveries] == [
        (HOOK, "pending", 0),
        (OTHER_HOOK, "pending", 0),
    ]
    assert await events_store.outbox_depth(now=event.created_at + 5) == (2, pytest.approx(5.0))


async def test_accept_and_a_retry_emit_nothing(events_store: MessageStore) -> None:
    await events_store.accept(new_message(1))
    record = await claim_one(events_store)
    await events_store.complete(outcome(record, "queued", not_before=2000.0))

    assert await _events(events_store) == []


async def test_held_callbacks_emit_each_status_as_it_was(events_store: MessageStore) -> None:
    await events_store.accept(new_message(1))
    record = await claim_one(events_store)
    # the delivery receipt overtakes the provider's answer
    early = StatusEvent(status="delivered", provider_message_id="SM1")
    assert await events_store.apply_status(TENANT, "twilio", early) is None
    await events_store.complete(outcome(record, "sent", provider_message_id="SM1"))

    assert [(t, d["status"]) for t, d in await _events(events_store)] == [
        ("message.sent", "sent"),
        ("message.delivered", "delivered"),
    ]


async def test_status_events_emit_only_when_the_message_moves(events_store: MessageStore) -> None:
    await _sent(events_store)
    delivered = StatusEvent(status="delivered", provider_message_id="SM1")
    await events_store.apply_status(TENANT, "twilio", delivered)
    await events_store.apply_status(TENANT, "twilio", delivered)  # the provider's retry
    await events_store.apply_status(TENANT, "twilio", StatusEvent("sent", "SM1"))  # late

    assert [t for t, _ in await _events(events_store)] == ["message.sent", "message.delivered"]


async def test_failovers_and_the_final_failure_are_events(events_store: MessageStore) -> None:
    await events_store.accept(new_message(1))
    record = await claim_one(events_store)
    moved = Failover("twilio", "meta", "provider_unavailable")
    await events_store.complete(outcome(record, "queued", failovers=(moved,), not_before=0.0))
    record = await claim_one(events_store, now=1001.0)
    failed = outcome(record, "failed", provider="meta", error_code="invalid_number")
    await events_store.complete(failed)

    events = await _events(events_store)
    assert [t for t, _ in events] == ["message.failover", "message.failed"]
    assert events[0][1]["failover"] == {
        "from": "twilio",
        "to": "meta",
        "reason": "provider_unavailable",
    }


async def test_a_lost_lease_writes_no_event(events_store: MessageStore) -> None:
    await events_store.accept(new_message(1))
    record = await claim_one(events_store)
    stale = replace(outcome(record, "sent"), lease_token="not-the-token")

    assert await events_store.complete(stale) is None
    assert await _events(events_store) == []


async def test_cancel_emits_canceled(events_store: MessageStore) -> None:
    await events_store.accept(new_message(1))
    assert await events_store.cancel("msg_test000001", now=1001.0) is not None
    assert await events_store.cancel("msg_test000001", now=1002.0) is None

    assert [(t, d["status"]) for t, d in await _events(events_store)] == [
        ("message.canceled", "canceled")
    ]


def _inbound(text: str, provider_id: str) -> InboundMessage:
    return InboundMessage(
        sender="+56911111111", recipient="+15550000001", body=text, provider_message_id=provider_id
    )


async def test_an_opt_out_reply_suppresses_its_sender_in_the_same_write(
    events_store: MessageStore,
) -> None:
    stop = _inbound("BAJA", "SMin1")
    await events_store.add_inbound(TENANT, "sms", "twilio", stop, opt_out="stop")
    # the provider delivers the same callback again: nothing new, no second event
    await events_store.add_inbound(TENANT, "sms", "twilio", stop, opt_out="stop")

    assert await suppressed_among(events_store, TENANT, "sms", ["+56911111111"]) == ["+56911111111"]
    events = await _events(events_store)
    assert [t for t, _ in events] == ["message.received", "recipient.suppressed"]
    assert events[0][1]["body"] == "BAJA"
    assert events[1][1]["address"] == "+56911111111"

    await events_store.add_inbound(
        TENANT, "sms", "twilio", _inbound("ALTA", "SMin2"), opt_out="start"
    )
    assert await suppressed_among(events_store, TENANT, "sms", ["+56911111111"]) == []
    assert [t for t, _ in await _events(events_store)][-2:] == [
        "message.received",
        "recipient.unsuppressed",
    ]


async def test_inbound_text_reaches_its_event_byte_for_byte(events_store: MessageStore) -> None:
    await events_store.add_inbound(TENANT, "whatsapp", "meta", _inbound(TEXT, "wamid.1"))

    [(event_type, data)] = await _events(events_store)
    assert (event_type, data["body"]) == ("message.received", TEXT)


async def test_suppress_and_unsuppress_emit_only_on_a_change(events_store: MessageStore) -> None:
    assert await events_store.suppress(TENANT, "email", "a@b.cl", reason="bounce", now=1.0)
    assert not await events_store.suppress(TENANT, "email", "a@b.cl", reason="again", now=2.0)
    assert await events_store.unsuppress(TENANT, "email", "a@b.cl")
    assert not await events_store.unsuppress(TENANT, "email", "a@b.cl")

    assert [t for t, _ in await _events(events_store)] == [
        "recipient.suppressed",
        "recipient.unsuppressed",
    ]


async def test_without_an_event_source_nothing_is_written(store: MessageStore) -> None:
    await _sent(store)
    await store.suppress(TENANT, "sms", "+56911111111", reason=None, now=1.0)

    assert await store.list_events(TENANT, after_seq=None, limit=10) == []
    assert await store.outbox_depth(now=2000.0) == (0, 0.0)


async def test_events_are_kept_without_endpoints_and_listed_per_tenant_by_cursor(
    events_store: MessageStore,
) -> None:
    for n in range(5):
        await events_store.suppress("quiet", "sms", f"+5691111111{n}", reason=None, now=n)
    await events_store.suppress(TENANT, "sms", "+56922222222", reason=None, now=9.0)

    first = await events_store.list_events("quiet", after_seq=None, limit=2)
    rest = await events_store.list_events("quiet", after_seq=first[-1].seq, limit=10)
    addresses = [json.loads(e.body)["data"]["address"] for e in first + rest]
    assert addresses == [f"+5691111111{n}" for n in range(5)]
    assert all(e.deliveries == () for e in first + rest)
    assert await events_store.outbox_depth(now=10.0) == (1, pytest.approx(1.0))  # acme's only


async def test_claims_are_leases_capped_per_endpoint(events_store: MessageStore) -> None:
    events_store.events = Recording((HOOK, OTHER_HOOK))
    for n in range(3):
        await events_store.add_event(
            NewEvent(f"evt_x{n}", TENANT, "provider.down", b"{}", 100.0 + n, (HOOK, OTHER_HOOK))
        )

    assert (
        await events_store.claim_event_deliveries(
            now=99.0, limit=10, lease_seconds=30, per_endpoint=5
        )
        == []
    )
    claimed = await events_store.claim_event_deliveries(
        now=200.0, limit=10, lease_seconds=30, per_endpoint=2, exclude_endpoints=[OTHER_HOOK]
    )
    assert [(d.event_id, d.endpoint, d.attempts) for d in claimed] == [
        ("evt_x0", HOOK, 0),
        ("evt_x1", HOOK, 0),
    ]
    assert claimed[0].body == b"{}" and claimed[0].type == "provider.down"
    # leased: not claimed again until the lease is over, the rest still is
    again = await events_store.claim_event_deliveries(
        now=201.0, limit=10, lease_seconds=30, per_endpoint=5
    )
    assert sorted((d.event_id, d.endpoint) for d in again) == [
        ("evt_x0", OTHER_HOOK),
        ("evt_x1", OTHER_HOOK),
        ("evt_x2", HOOK),
        ("evt_x2", OTHER_HOOK),
    ]
    assert await events_store.next_event_due() == pytest.approx(230.0)
    assert await events_store.next_event_due([HOOK]) == pytest.approx(231.0)
    after_lease = await events_store.claim_event_deliveries(
        now=230.5, limit=10, lease_seconds=30, per_endpoint=5
    )
    assert [(d.event_id, d.endpoint) for d in after_lease] == [("evt_x0", HOOK), ("evt_x1", HOOK)]


async def test_finishing_a_delivery(new_store: StoreFactory) -> None:
    store = new_store()
    store.events = Recording()
    await store.open()
    for n in range(3):
        await store.add_event(NewEvent(f"evt_f{n}", TENANT, "provider.up", b"{}", 100.0, (HOOK,)))
    claimed = await store.claim_event_deliveries(
        now=100.0, limit=10, lease_seconds=30, per_endpoint=5
    )
    assert len(claimed) == 3

    def result(n: int, **fields: Any) -> DeliveryResult:
        base = {"delivered": False, "status_code": None, "error": None, "retry_at": None}
        return DeliveryResult(
            event_id=f"evt_f{n}", endpoint=HOOK, finished_at=101.0, **{**base, **fields}
        )

    await store.finish_event_delivery(result(0, delivered=True, status_code=204))
    await store.finish_event_delivery(result(1, status_code=500, error="HTTP 500", retry_at=105.0))
    await store.finish_event_delivery(result(2, error="no answer within 10 s"))
    # a finish for a delivery no longer pending changes nothing
    await store.finish_event_delivery(result(0, status_code=500, error="late", retry_at=1.0))
    await store.close()

    store = new_store()  # the schedule survives a restart
    await store.open()
    listed = {
        e.id: e.deliveries[0] for e in await store.list_events(TENANT, after_seq=None, limit=9)
    }
    assert (
        listed["evt_f0"].state,
        listed["evt_f0"].attempts,
        listed["evt_f0"].last_status_code,
    ) == (
        "delivered",
        1,
        204,
    )
    retry = listed["evt_f1"]
    assert (retry.state, retry.attempts, retry.next_attempt_at, retry.last_error) == (
        "pending",
        1,
        105.0,
        "HTTP 500",
    )
    assert (listed["evt_f2"].state, listed["evt_f2"].next_attempt_at) == ("failed", None)
    assert (
        await store.claim_event_deliveries(now=104.0, limit=9, lease_seconds=30, per_endpoint=5)
        == []
    )
    [due] = await store.claim_event_deliveries(now=105.0, limit=9, lease_seconds=30, per_endpoint=5)
    assert (due.event_id, due.attempts) == ("evt_f1", 1)

    [health] = await store.endpoint_health(TENANT, [HOOK])
    assert (health.pending, health.failed, health.last_attempt_at) == (1, 1, 101.0)
    [unknown] = await store.endpoint_health(TENANT, [OTHER_HOOK])
    assert (unknown.pending, unknown.failed, unknown.last_status_code) == (0, 0, None)
    await store.close()
