"""The durable queue and message log."""

from __future__ import annotations

from pipecored.store.base import (
    EVERY_MESSAGE,
    AcceptResult,
    AppliedStatus,
    AttemptOutcome,
    AttemptRecord,
    Completed,
    DeliveryResult,
    EndpointDelivery,
    EndpointHealth,
    EventDelivery,
    EventRecord,
    EventSource,
    Failover,
    IdempotencyClaim,
    IdempotencyConflict,
    LogFilter,
    MessageRecord,
    MessageStore,
    NewEvent,
    NewMessage,
    StoreStats,
    SuppressionRecord,
    new_event_id,
    new_message_id,
)

__all__ = [
    "EVERY_MESSAGE",
    "AcceptResult",
    "AppliedStatus",
    "AttemptOutcome",
    "AttemptRecord",
    "Completed",
    "DeliveryResult",
    "EndpointDelivery",
    "EndpointHealth",
    "EventDelivery",
    "EventRecord",
    "EventSource",
    "Failover",
    "IdempotencyClaim",
    "IdempotencyConflict",
    "LogFilter",
    "MessageRecord",
    "MessageStore",
    "NewEvent",
    "NewMessage",
    "StoreStats",
    "SuppressionRecord",
    "new_event_id",
    "new_message_id",
    "open_store",
]


def open_store(url: str, *, base_dir: str) -> MessageStore:
    """Build the store named by a SQLAlchemy-style URL (``sqlite:///relative``, ``sqlite:////abs``).

    Relative SQLite paths are relative to ``base_dir`` (the config directory).
    """
    from pipecored.store.sqlite import SQLiteStore, sqlite_path

    if url.startswith("sqlite://"):
        return SQLiteStore(sqlite_path(url, base_dir=base_dir))
    raise ValueError(f"unsupported store URL scheme: {url.split(':', 1)[0]!r} (supported: sqlite)")
