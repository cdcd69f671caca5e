"""The event types a tenant's endpoint can receive (SPEC section 8), and which ones it asked for."""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

MESSAGE_SENT: Final = "message.sent"
MESSAGE_DELIVERED: Final = "message.delivered"
MESSAGE_READ: Final = "message.read"
MESSAGE_FAILED: Final = "message.failed"
MESSAGE_CANCELED: Final = "message.canceled"
MESSAGE_FAILOVER: Final = "message.failover"
MESSAGE_RECEIVED: Final = "message.received"
RECIPIENT_SUPPRESSED: Final = "recipient.suppressed"
RECIPIENT_UNSUPPRESSED: Final = "recipient.unsuppressed"
PROVIDER_DOWN: Final = "provider.down"
PROVIDER_UP: Final = "provider.up"

EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {
        MESSAGE_SENT,
        MESSAGE_DELIVERED,
        MESSAGE_READ,
        MESSAGE_FAILED,
        MESSAGE_CANCELED,
        MESSAGE_FAILOVER,
        MESSAGE_RECEIVED,
        RECIPIENT_SUPPRESSED,
        RECIPIENT_UNSUPPRESSED,
        PROVIDER_DOWN,
        PROVIDER_UP,
    }
)

# The status a message moves to -> the event that move emits. "queued" and "sending" are
# internal steps a platform has no use for.
STATUS_EVENTS: Final[dict[str, str]] = {
    "sent": MESSAGE_SENT,
    "delivered": MESSAGE_DELIVERED,
    "read": MESSAGE_READ,
    "failed": MESSAGE_FAILED,
    "canceled": MESSAGE_CANCELED,
}


def unknown_event_types(names: Collection[str]) -> list[str]:
    """The names in a tenant's ``events`` list that are no event type, in their order (for the
    config error that names them)."""
    return [name for name in names if name not in EVENT_TYPES]


def endpoint_wants(subscribed: Collection[str] | None, event_type: str) -> bool:
    """Whether an endpoint whose ``events`` list is ``subscribed`` gets ``event_type``: a missing
    list means every event (SPEC section 8's default)."""
    return subscribed is None or event_type in subscribed
