"""The durable queue and message log."""

from __future__ import annotations

from pipecored.store.base import (
    EVERY_MESSAGE,
    AcceptResult,
    AppliedStatus,
    ArmResult,
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
    Lease,
    LogFilter,
    MessageRecord,
    MessageStore,
    NewEvent,
    NewMessage,
    RecipientsSuppressed,
    StoreStats,
    SuppressionRecord,
    new_event_id,
    new_message_id,
)

__all__ = [
    "EVERY_MESSAGE",
    "AcceptResult",
    "AppliedStatus",
    "ArmResult",
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
    "Lease",
    "LogFilter",
    "MessageRecord",
    "MessageStore",
    "NewEvent",
    "NewMessage",
    "RecipientsSuppressed",
    "StoreStats",
    "SuppressionRecord",
    "migrate_store",
    "new_event_id",
    "new_message_id",
    "open_store",
]


def open_store(
    url: str,
    *,
    base_dir: str,
    pool_min: int = 2,
    pool_max: int = 10,
    retention: float | None = None,
) -> MessageStore:
    """Build the store named by its URL: ``sqlite:///relative`` (to ``base_dir``, the config
    dir), ``sqlite:////absolute``, or ``postgresql://user@host:port/database`` (also
    ``postgres://``), with a pool of ``pool_min`` to ``pool_max`` connections, deleting
    finished messages and events older than ``retention`` seconds (PostgreSQL only)."""
    if url.startswith(("postgresql://", "postgres://")):
        from pipecored.store.postgres import PostgresStore

        return PostgresStore(
            url,
            min_connections=pool_min,
            max_connections=max(pool_min, pool_max),
            retention=retention,
        )
    if retention is not None:
        raise ValueError("store retention is applied by the PostgreSQL store only")
    from pipecored.store.sqlite import SQLiteStore, sqlite_path

    if url.startswith("sqlite://"):
        return SQLiteStore(sqlite_path(url, base_dir=base_dir))
    raise ValueError(
        f"unsupported store URL scheme: {url.split(':', 1)[0]!r} (supported: sqlite, postgresql)"
    )


async def migrate_store(url: str, *, base_dir: str) -> tuple[int, int]:
    """Apply the schema migrations of the store named by ``url``; returns the versions before and
    after. SQLite's are run by opening the file (which takes its owner lock: not while a daemon
    has it open); PostgreSQL's under the advisory lock every starting daemon takes too."""
    if url.startswith(("postgresql://", "postgres://")):
        from pipecored.store.postgres.schema import migrate_url

        return await migrate_url(url)
    from pipecored.store.sqlite import migrate_file, sqlite_path

    return await migrate_file(sqlite_path(url, base_dir=base_dir))
