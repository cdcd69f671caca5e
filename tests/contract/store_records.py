"""Builders for the store tests: new messages, attempt outcomes, and a message taken through the
queue to ``sent``. Shared by the contract suite and the SQLite-only tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pipecored.provider import StatusEvent
from pipecored.store import (
    AttemptOutcome,
    AttemptRecord,
    Completed,
    MessageRecord,
    MessageStore,
    NewEvent,
    NewMessage,
)

TENANT = "acme"
TEXT = "Hola, ¿mañana a las 20:00? 🍷"
HOOK = "https://app.example/hooks"


class MessageEvents:
    """An EventSource whose bodies say which message an event is of, and as what record (its
    status, error code, attempts, provider id); each event goes to :data:`HOOK`. ``records`` are
    the records the message events were built from."""

    def __init__(self) -> None:
        self.count = 0
        self.records: list[MessageRecord] = []

    def message_event(
        self,
        event_type: str,
        record: MessageRecord,
        *,
        now: float,
        extra: Mapping[str, Any] | None = None,
    ) -> NewEvent:
        self.records.append(record)
        data = {
            "id": record.id,
            "status": record.status,
            "error_code": record.error_code,
            "attempts": record.attempt_count,
            "provider_message_id": record.provider_message_id,
            "extra": dict(extra or {}),
        }
        return self.tenant_event(record.tenant_id, event_type, data, now=now)

    def tenant_event(
        self, tenant_id: str, event_type: str, data: Mapping[str, Any], *, now: float
    ) -> NewEvent:
        self.count += 1
        body = json.dumps({"type": event_type, "data": dict(data)}).encode()
        return NewEvent(f"evt_{self.count:05d}", tenant_id, event_type, body, now, (HOOK,))


def new_message(
    n: int,
    *,
    tenant: str = TENANT,
    channel: str = "sms",
    created_at: float = 1000.0,
    body: str = "hello",
) -> NewMessage:
    return NewMessage(
        id=f"msg_test{n:06d}",
        tenant_id=tenant,
        channel=channel,
        to="+15550000001",
        sender=None,
        payload={"body": body},
        created_at=created_at,
    )


def outcome(
    record: MessageRecord,
    status: Any,
    *,
    provider: str | None = "twilio",
    attempt: bool = True,
    **fields: Any,
) -> AttemptOutcome:
    assert record.lease_token is not None
    return AttemptOutcome(
        message_id=record.id,
        lease_token=record.lease_token,
        attempt=AttemptRecord(
            provider=provider or "none",
            started_at=record.updated_at,
            outcome="success" if status in ("sent", "delivered") else "retryable_error",
            http_status=201,
            error_code=None,
            error_message=None,
            duration_ms=12.5,
        )
        if attempt
        else None,
        status=status,
        provider=provider,
        route_index=0,
        route_attempts=1,
        **fields,
    )


def outcome_fields(outcome: AttemptOutcome) -> dict[str, Any]:
    return {name: getattr(outcome, name) for name in AttemptOutcome.__slots__}


async def claim_one(store: MessageStore, *, now: float = 1000.0) -> MessageRecord:
    claimed = await store.claim(now=now, limit=1, lease_seconds=30)
    assert len(claimed) == 1
    return claimed[0]


async def sent_message(
    store: MessageStore, n: int, provider_message_id: str, **kwargs: Any
) -> MessageRecord:
    await store.accept(new_message(n, **kwargs))
    record = await claim_one(store, now=kwargs.get("created_at", 1000.0))
    assert await store.complete(
        outcome(record, "sent", provider_message_id=provider_message_id, sent_at=1000.5)
    )
    got = await store.get(record.id)
    assert got is not None
    return got


async def complete_after_early_events(store: MessageStore) -> MessageRecord:
    """Callbacks that overtake the provider's answer: ``delivered`` then ``read`` for provider id
    SM1 before the attempt naming SM1 is completed (and a stale ``delivered``, and another
    tenant's ``read`` for the same id). The completion applies this tenant's, in order."""
    await store.accept(new_message(1))
    record = await claim_one(store)
    early = StatusEvent(status="delivered", provider_message_id="SM1")
    assert await store.apply_status(TENANT, "twilio", early) is None
    other_tenant = StatusEvent(status="read", provider_message_id="SM1")
    assert await store.apply_status("other", "twilio", other_tenant) is None

    early_read = StatusEvent(status="read", provider_message_id="SM1")
    assert await store.apply_status(TENANT, "twilio", early_read) is None
    stale = StatusEvent(status="delivered", provider_message_id="SM1")  # after read: no move
    assert await store.apply_status(TENANT, "twilio", stale) is None

    done = await store.complete(outcome(record, "sent", provider_message_id="SM1"))
    assert done == Completed(deferred=("delivered", "read"))
    got = await store.get(record.id)
    assert got is not None
    assert got.status == "read"
    return got


async def suppressed_among(
    store: MessageStore, tenant_id: str, channel: str, addresses: list[str]
) -> list[str]:
    """Which of ``addresses`` are on the tenant's suppression list for ``channel``, in the order
    given, read through the list the suppressions API pages."""
    listed = await store.list_suppressions(tenant_id, channel=channel, after_seq=None, limit=10_000)
    found = {record.address for record in listed}
    return [address for address in dict.fromkeys(addresses) if address in found]
