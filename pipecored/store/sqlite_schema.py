"""The SQLite store's schema, versioned with ``PRAGMA user_version``.

``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1``. Released migrations are never
edited: a change is a new script appended to the list, so every existing database reaches the
same schema by replaying what it has not seen yet.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

_V1 = """
CREATE TABLE messages (
    -- AUTOINCREMENT: a seq is never reused, so a log cursor can never skip onto a newer message
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    provider TEXT,
    to_json TEXT NOT NULL,
    sender TEXT,
    status TEXT NOT NULL CHECK (
        status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'received')
    ),
    attempt_count INTEGER NOT NULL DEFAULT 0,
    provider_message_id TEXT,
    error_code TEXT,
    error_message TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    sent_at REAL,
    not_before REAL,
    lease_until REAL,
    lease_token TEXT,
    route_index INTEGER NOT NULL DEFAULT 0,
    route_attempts INTEGER NOT NULL DEFAULT 0,
    payload_json TEXT NOT NULL,
    body_preview TEXT,
    -- stored rather than computed per query so that percentiles can walk an index
    latency_ms REAL
);

-- the log, newest first, and its status/channel filters
CREATE INDEX messages_tenant_seq ON messages (tenant_id, seq);
CREATE INDEX messages_tenant_status_seq ON messages (tenant_id, status, seq);
CREATE INDEX messages_tenant_channel_seq ON messages (tenant_id, channel, seq);

-- the raw side of stats: the part of an hour that a ?since cuts into
CREATE INDEX messages_tenant_created ON messages (tenant_id, created_at);

-- only the backlog is indexed: claim, queue_depth and next_due stay cheap however long the log
CREATE INDEX messages_queue
    ON messages (status, not_before, lease_until, created_at)
    WHERE status IN ('queued', 'sending');

-- status callbacks and inbound retries name a message by the provider's id
CREATE INDEX messages_provider_id
    ON messages (tenant_id, provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- percentiles are LIMIT 1 OFFSET k on this index; created_at makes ?since index-only too
CREATE INDEX messages_latency
    ON messages (tenant_id, latency_ms, created_at)
    WHERE latency_ms IS NOT NULL;

CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    message_seq INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    started_at REAL NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER,
    error_code TEXT,
    error_message TEXT,
    duration_ms REAL NOT NULL
);
CREATE INDEX attempts_message ON attempts (message_seq, started_at);

CREATE TABLE idempotency (
    tenant_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_expires ON idempotency (expires_at);

-- status callbacks that overtook our own write of the provider's id
CREATE TABLE pending_events (
    id INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    occurred_at REAL,
    received_at REAL NOT NULL
);
CREATE INDEX pending_events_message
    ON pending_events (tenant_id, provider, provider_message_id);
CREATE INDEX pending_events_received ON pending_events (received_at);

-- Outbound counts per tenant, hour of creation, status, channel and provider, kept by triggers.
-- Stats read a few hundred rows here instead of counting a million messages: even an
-- index-only GROUP BY over a tenant's messages steps through every one of them.
CREATE TABLE message_counts (
    tenant_id TEXT NOT NULL,
    hour INTEGER NOT NULL, -- CAST(created_at / 3600 AS INTEGER)
    status TEXT NOT NULL,
    channel TEXT NOT NULL,
    provider TEXT NOT NULL, -- '' while no provider has carried it
    n INTEGER NOT NULL,
    measured INTEGER NOT NULL, -- how many of the n have a latency_ms
    PRIMARY KEY (tenant_id, hour, status, channel, provider)
) WITHOUT ROWID;

CREATE TRIGGER message_counts_insert AFTER INSERT ON messages
WHEN NEW.direction = 'outbound'
BEGIN
    INSERT INTO message_counts
    VALUES (
        NEW.tenant_id, CAST(NEW.created_at / 3600 AS INTEGER), NEW.status, NEW.channel,
        COALESCE(NEW.provider, ''), 1, NEW.latency_ms IS NOT NULL
    )
    ON CONFLICT DO UPDATE SET n = n + 1, measured = measured + excluded.measured;
END;

-- tenant_id, channel and created_at never change, so only these three columns can move a row
CREATE TRIGGER message_counts_update AFTER UPDATE OF status, provider, latency_ms ON messages
WHEN NEW.direction = 'outbound' AND (
    OLD.status IS NOT NEW.status
    OR OLD.provider IS NOT NEW.provider
    OR (OLD.latency_ms IS NULL) <> (NEW.latency_ms IS NULL)
)
BEGIN
    UPDATE message_counts
    SET n = n - 1, measured = measured - (OLD.latency_ms IS NOT NULL)
    WHERE tenant_id = OLD.tenant_id AND hour = CAST(OLD.created_at / 3600 AS INTEGER)
        AND status = OLD.status AND channel = OLD.channel
        AND provider = COALESCE(OLD.provider, '');
    INSERT INTO message_counts
    VALUES (
        NEW.tenant_id, CAST(NEW.created_at / 3600 AS INTEGER), NEW.status, NEW.channel,
        COALESCE(NEW.provider, ''), 1, NEW.latency_ms IS NOT NULL
    )
    ON CONFLICT DO UPDATE SET n = n + 1, measured = measured + excluded.measured;
END;

CREATE TRIGGER message_counts_delete AFTER DELETE ON messages
WHEN OLD.direction = 'outbound'
BEGIN
    UPDATE message_counts
    SET n = n - 1, measured = measured - (OLD.latency_ms IS NOT NULL)
    WHERE tenant_id = OLD.tenant_id AND hour = CAST(OLD.created_at / 3600 AS INTEGER)
        AND status = OLD.status AND channel = OLD.channel
        AND provider = COALESCE(OLD.provider, '');
END;
"""


def _v2(conn: sqlite3.Connection) -> None:
    """Scheduled sends and cancellation: the statuses 'scheduled' and 'canceled', and the queue
    index covering scheduled messages (claimed when their sendAt comes).

    SQLite cannot alter a CHECK constraint; widening one (every existing row still satisfies
    it) is the documented use of writable_schema, with the schema version bumped so that other
    connections read the new definition.
    """
    old = "status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'received')"
    new = (
        "status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'received',"
        " 'scheduled', 'canceled')"
    )
    version: int = conn.execute("PRAGMA schema_version").fetchone()[0]
    conn.execute("PRAGMA writable_schema = ON")
    try:
        changed = conn.execute(
            "UPDATE sqlite_schema SET sql = replace(sql, ?, ?)"
            " WHERE type = 'table' AND name = 'messages' AND instr(sql, ?) > 0",
            (old, new, old),
        ).rowcount
        if changed != 1:
            raise sqlite3.DatabaseError("messages table definition not as expected for v2")
        conn.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
    for statement in split_statements(_V2_INDEXES):
        conn.execute(statement)


_V2_INDEXES = """
DROP INDEX messages_queue;
CREATE INDEX messages_queue
    ON messages (status, not_before, lease_until, created_at)
    WHERE status IN ('queued', 'sending', 'scheduled');
"""

# Events to the tenants' platforms (SPEC section 8) and suppressions (SPEC section 9).
_V3 = """
-- One row per event, written in the transaction of the change that causes it. body is the exact
-- JSON posted on every attempt (the signature covers those bytes); seq is the events API's cursor.
CREATE TABLE outbox_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX outbox_events_tenant_seq ON outbox_events (tenant_id, seq);

-- One row per event and endpoint subscribed to it when it was stored: its own schedule, so a
-- dead endpoint's retries never hold back another endpoint's deliveries.
CREATE TABLE outbox_deliveries (
    event_id TEXT NOT NULL REFERENCES outbox_events (id) ON DELETE CASCADE,
    endpoint TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    last_status_code INTEGER,
    last_error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (event_id, endpoint)
);
-- only what is still to send is indexed: the worker's due query stays cheap however long the
-- history, and the outbox depth and oldest age come from the same index
CREATE INDEX outbox_deliveries_due
    ON outbox_deliveries (next_attempt_at)
    WHERE state = 'pending';

CREATE TABLE suppressions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    reason TEXT,
    created_at REAL NOT NULL,
    UNIQUE (tenant_id, channel, address)
);
CREATE INDEX suppressions_tenant_channel_seq ON suppressions (tenant_id, channel, seq);
"""

# The outbox per endpoint: a delivery names its tenant (two tenants may post to one URL), and
# an endpoint's state (pending and failed counts, its last attempt) is read from an index.
_V4 = """
ALTER TABLE outbox_deliveries ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
UPDATE outbox_deliveries
    SET tenant_id = (SELECT e.tenant_id FROM outbox_events e WHERE e.id = event_id);
CREATE INDEX outbox_deliveries_endpoint_state
    ON outbox_deliveries (tenant_id, endpoint, state);
CREATE INDEX outbox_deliveries_endpoint_recent
    ON outbox_deliveries (tenant_id, endpoint, updated_at);
"""

# Provider experiments (SPEC section 10): the arm each message was assigned to, and the indexes
# a tenant's per-arm results read (counts, and latency percentiles by walking an index).
_V5 = """
ALTER TABLE messages ADD COLUMN experiment TEXT;
ALTER TABLE messages ADD COLUMN experiment_arm TEXT;
CREATE INDEX messages_experiment
    ON messages (tenant_id, experiment, experiment_arm, channel, status)
    WHERE experiment IS NOT NULL;
CREATE INDEX messages_experiment_latency
    ON messages (tenant_id, experiment, experiment_arm, latency_ms)
    WHERE experiment IS NOT NULL AND latency_ms IS NOT NULL;
"""

# When a message in the backlog is next due: a queued message when it was accepted (or at its
# not_before: a retry, a sendAt, quiet hours), a leased one when its lease runs out. The claim and
# next_due queries name this exact expression, so that SQLite can walk the index on it.
DUE_AT = "(CASE status WHEN 'sending' THEN lease_until ELSE COALESCE(not_before, created_at) END)"

# The claim took the due rows in seq order: it read every due row of the backlog and sorted them
# (14 ms per claim of 64 with 100,000 queued, on the writer thread that every accept waits for).
# Indexed by when each is due, a claim reads the rows it takes and stops; created_at and status
# keep queue_depth a scan of this index alone.
_V6 = f"""
DROP INDEX messages_queue;
CREATE INDEX messages_queue
    ON messages ({DUE_AT}, status, created_at)
    WHERE status IN ('queued', 'sending', 'scheduled');
"""

Migration = str | Callable[[sqlite3.Connection], None]

MIGRATIONS: tuple[Migration, ...] = (_V1, _v2, _V3, _V4, _V5, _V6)

SCHEMA_VERSION = len(MIGRATIONS)


def split_statements(script: str) -> list[str]:
    """Split a script into statements, keeping trigger bodies whole.

    ``executescript`` would do this for us but commits any open transaction first, and a
    migration has to be one transaction with its ``user_version`` bump.
    """
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return [s for s in statements if not _only_comments(s)]


def _only_comments(statement: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in statement.splitlines())


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`; returns the version found before.

    Each step runs in its own ``BEGIN IMMEDIATE`` transaction and re-reads the version under the
    write lock, so two processes opening the same new file cannot both apply a step.
    """
    found: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"database schema version {found} is newer than this pipecored ({SCHEMA_VERSION})"
        )
    for target in range(found + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            current: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if current < target:
                step = MIGRATIONS[target - 1]
                if callable(step):
                    step(conn)
                else:
                    for statement in split_statements(step):
                        conn.execute(statement)
                # PRAGMA takes no bound parameters; target is an int from range()
                conn.execute(f"PRAGMA user_version = {int(target)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return found
