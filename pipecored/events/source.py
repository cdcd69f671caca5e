"""What the store asks, inside a change's transaction, for the event that change emits: the
body built once from the record as the change left it, and the tenant's endpoints subscribed to
the event's type at that moment, read from the live configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pipecored.api.serializers import log_item
from pipecored.config.registry import ConfigSnapshot
from pipecored.events.envelope import event_body
from pipecored.store.base import MessageRecord, NewEvent, new_event_id


class TenantEvents:
    """The gateway's :class:`~pipecored.store.base.EventSource`. ``listeners`` are told of each
    event that has an endpoint to go to (the outbox worker wakes); they run on the store's
    writer, before the commit, so they must only schedule work."""

    def __init__(self, snapshot: Callable[[], ConfigSnapshot]) -> None:
        self._snapshot = snapshot
        self.listeners: list[Callable[[], None]] = []

    def message_event(
        self,
        event_type: str,
        record: MessageRecord,
        *,
        now: float,
        extra: Mapping[str, Any] | None = None,
    ) -> NewEvent:
        """``data`` is the message's log item (an inbound message's text whole), plus
        ``extra`` (a failover's providers)."""
        data: dict[str, Any] = dict(log_item(record, body_chars=None))
        if extra:
            data.update(extra)
        return self.tenant_event(record.tenant_id, event_type, data, now=now)

    def tenant_event(
        self, tenant_id: str, event_type: str, data: Mapping[str, Any], *, now: float
    ) -> NewEvent:
        tenant = self._snapshot().tenant(tenant_id)
        endpoints = (
            tuple(hook.url for hook in tenant.webhooks if hook.wants(event_type))
            if tenant is not None
            else ()
        )
        event = NewEvent(
            id=new_event_id(),
            tenant_id=tenant_id,
            type=event_type,
            body=event_body(event_type, now, data),
            created_at=now,
            endpoints=endpoints,
        )
        if endpoints:
            for listener in self.listeners:
                listener()
        return event
