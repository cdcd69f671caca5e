"""The PostgreSQL store's schema, versioned in a table of its own.

``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1``, each in its own transaction
with the version bump. They run under an advisory lock, so that several daemons starting at once
on a new database (a rolling deploy, a cluster's first start) apply each step exactly once; the
others wait for the lock and find nothing left to do.

The tables are SQLite's (``sqlite_schema``), with three differences that several daemons on one
database need: a message's lease names the node holding it (``lease_node``), so that the others
can take back a dead node's messages at once; outbound counts are kept as insert-only deltas
(``message_count_deltas``, folded into ``message_counts`` by one node at a time), since
concurrent updates of one counter row per tenant and hour would serialize every delivery and can
deadlock; and an event records its transaction id, so that polling never skips an event whose
transaction committed after a later one.
"""

from __future__ import annotations

from typing import Any, Final, cast

import psycopg

# pg_advisory_lock key: "pipecore" in ASCII, as a bigint
MIGRATION_LOCK: Final = 0x70697065636F7265

_V1 = """
CREATE TABLE pipecored_schema (version integer NOT NULL);
INSERT INTO pipecored_schema VALUES (0);

CREATE TABLE messages (
    seq bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    tenant_id text NOT NULL,
    channel text NOT NULL,
    direction text NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    provider text,
    to_json text NOT NULL,
    sender text,
    status text NOT NULL CHECK (status IN (
        'scheduled', 'queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'canceled',
        'received')),
    attempt_count integer NOT NULL DEFAULT 0,
    provider_message_id text,
    error_code text,
    error_message text,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    sent_at double precision,
    not_before double precision,
    lease_until double precision,
    lease_token text,
    lease_node text,
    route_index integer NOT NULL DEFAULT 0,
    route_attempts integer NOT NULL DEFAULT 0,
    payload_json text NOT NULL,
    body_preview text,
    latency_ms double precision
);
CREATE INDEX messages_tenant_seq ON messages (tenant_id, seq);
CREATE INDEX messages_tenant_status_seq ON messages (tenant_id, status, seq);
CREATE INDEX messages_tenant_channel_seq ON messages (tenant_id, channel, seq);
CREATE INDEX messages_tenant_direction_seq ON messages (tenant_id, direction, seq);
CREATE INDEX messages_tenant_created ON messages (tenant_id, created_at);
CREATE INDEX messages_queue ON messages (seq) WHERE status IN ('queued', 'sending', 'scheduled');
CREATE INDEX messages_leases ON messages (lease_node) WHERE status = 'sending';
CREATE INDEX messages_provider_id ON messages (tenant_id, provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
-- a provider's retry of an inbound message, through any node, is stored once
CREATE UNIQUE INDEX messages_inbound_once ON messages (tenant_id, provider, provider_message_id)
    WHERE direction = 'inbound' AND provider_message_id IS NOT NULL;
CREATE INDEX messages_latency ON messages (tenant_id, latency_ms, created_at)
    WHERE latency_ms IS NOT NULL;

CREATE TABLE attempts (
    id bigserial PRIMARY KEY,
    message_seq bigint NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    provider text NOT NULL,
    started_at double precision NOT NULL,
    outcome text NOT NULL,
    http_status integer,
    error_code text,
    error_message text,
    duration_ms double precision NOT NULL
);
CREATE INDEX attempts_message ON attempts (message_seq, started_at);

CREATE TABLE idempotency (
    tenant_id text NOT NULL,
    key text NOT NULL,
    request_hash text NOT NULL,
    message_id text NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_expires ON idempotency (expires_at);

CREATE TABLE pending_events (
    id bigserial PRIMARY KEY,
    tenant_id text NOT NULL,
    provider text NOT NULL,
    provider_message_id text NOT NULL,
    status text NOT NULL,
    error_code text,
    error_message text,
    occurred_at double precision,
    received_at double precision NOT NULL
);
CREATE INDEX pending_events_message ON pending_events (tenant_id, provider, provider_message_id);
CREATE INDEX pending_events_received ON pending_events (received_at);

CREATE TABLE message_counts (
    tenant_id text NOT NULL,
    hour bigint NOT NULL,
    status text NOT NULL,
    channel text NOT NULL,
    provider text NOT NULL,
    n bigint NOT NULL,
    measured bigint NOT NULL,
    PRIMARY KEY (tenant_id, hour, status, channel, provider)
);
CREATE TABLE message_count_deltas (
    id bigserial PRIMARY KEY,
    tenant_id text NOT NULL,
    hour bigint NOT NULL,
    status text NOT NULL,
    channel text NOT NULL,
    provider text NOT NULL,
    n integer NOT NULL,
    measured integer NOT NULL
);
CREATE INDEX message_count_deltas_tenant ON message_count_deltas (tenant_id, hour);

CREATE FUNCTION pipecored_count_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.direction = 'outbound' THEN
        INSERT INTO message_count_deltas (tenant_id, hour, status, channel, provider, n, measured)
        VALUES (OLD.tenant_id, floor(OLD.created_at / 3600)::bigint, OLD.status, OLD.channel,
                COALESCE(OLD.provider, ''), -1, -(OLD.latency_ms IS NOT NULL)::integer);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.direction = 'outbound' THEN
        INSERT INTO message_count_deltas (tenant_id, hour, status, channel, provider, n, measured)
        VALUES (NEW.tenant_id, floor(NEW.created_at / 3600)::bigint, NEW.status, NEW.channel,
                COALESCE(NEW.provider, ''), 1, (NEW.latency_ms IS NOT NULL)::integer);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_count_insert_delete AFTER INSERT OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION pipecored_count_message();
CREATE TRIGGER messages_count_update AFTER UPDATE OF status, provider, latency_ms ON messages
    FOR EACH ROW WHEN (
        OLD.status IS DISTINCT FROM NEW.status
        OR OLD.provider IS DISTINCT FROM NEW.provider
        OR (OLD.latency_ms IS NULL) <> (NEW.latency_ms IS NULL))
    EXECUTE FUNCTION pipecored_count_message();

CREATE TABLE outbox_events (
    seq bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    tenant_id text NOT NULL,
    type text NOT NULL,
    body bytea NOT NULL,
    created_at double precision NOT NULL,
    tx xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX outbox_events_tenant_tx_seq ON outbox_events (tenant_id, tx, seq);

CREATE TABLE outbox_deliveries (
    event_id text NOT NULL REFERENCES outbox_events (id) ON DELETE CASCADE,
    tenant_id text NOT NULL,
    endpoint text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at double precision,
    last_status_code integer,
    last_error text,
    updated_at double precision NOT NULL,
    PRIMARY KEY (event_id, endpoint)
);
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_deliveries_endpoint_state ON outbox_deliveries (tenant_id, endpoint, state);
CREATE INDEX outbox_deliveries_endpoint_recent
    ON outbox_deliveries (tenant_id, endpoint, updated_at);

CREATE TABLE suppressions (
    seq bigserial PRIMARY KEY,
    tenant_id text NOT NULL,
    channel text NOT NULL,
    address text NOT NULL,
    reason text,
    created_at double precision NOT NULL,
    UNIQUE (tenant_id, channel, address)
);
CREATE INDEX suppressions_tenant_channel_seq ON suppressions (tenant_id, channel, seq);

-- what the daemons sharing the database coordinate through
CREATE TABLE nodes (
    node_id text PRIMARY KEY,
    started_at double precision NOT NULL,
    heartbeat_at double precision NOT NULL
);
CREATE TABLE rate_limits (key text PRIMARY KEY, tat double precision NOT NULL);
CREATE TABLE claims (key text PRIMARY KEY, until double precision NOT NULL);
"""

# v2: retention (store_retention) finds what is past it through these, oldest first
_V2 = """
CREATE INDEX messages_created ON messages (created_at);
CREATE INDEX outbox_events_created ON outbox_events (created_at);
"""

# v3: provider experiments (SPEC section 10), as SQLite's v5
_V3 = """
ALTER TABLE messages ADD COLUMN experiment text;
ALTER TABLE messages ADD COLUMN experiment_arm text;
CREATE INDEX messages_experiment
    ON messages (tenant_id, experiment, experiment_arm, channel, status)
    WHERE experiment IS NOT NULL;
CREATE INDEX messages_experiment_latency
    ON messages (tenant_id, experiment, experiment_arm, latency_ms)
    WHERE experiment IS NOT NULL AND latency_ms IS NOT NULL;
"""

# When a message in the backlog is next due (SQLite's DUE_AT): the claim walks an index on it, so
# it reads the rows it takes, not every queued row before them (a backlog of scheduled messages,
# retries waiting, a lease not yet run out); next_due reads its first entry.
DUE_AT: Final = (
    "(CASE status WHEN 'sending' THEN lease_until ELSE COALESCE(not_before, created_at) END)"
)

# v4: the queue index by when each message is due
_V4 = f"""
DROP INDEX messages_queue;
CREATE INDEX messages_queue ON messages ({DUE_AT}, seq)
    WHERE status IN ('queued', 'sending', 'scheduled');
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION: Final = len(MIGRATIONS)


async def current_version(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT to_regclass('pipecored_schema') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute("SELECT version FROM pipecored_schema")
    found = await cur.fetchone()
    return int(cast(tuple[int], found)[0]) if found is not None else 0


async def migrate(conn: psycopg.AsyncConnection[Any]) -> int:
    """Bring the database to :data:`SCHEMA_VERSION` under the migration lock; returns the version
    found before. ``conn`` is in autocommit mode."""
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        found = await current_version(conn)
        if found > SCHEMA_VERSION:
            raise psycopg.DatabaseError(
                f"database schema version {found} is newer than this pipecored ({SCHEMA_VERSION})"
            )
        for target in range(found + 1, SCHEMA_VERSION + 1):
            async with conn.transaction():
                await conn.execute(MIGRATIONS[target - 1])
                await conn.execute("UPDATE pipecored_schema SET version = %s", (target,))
        return found
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


async def migrate_url(url: str) -> tuple[int, int]:
    """``pipecored migrate`` on PostgreSQL: (version before, version after)."""
    from pipecored.errors import StoreError

    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            before = await migrate(conn)
    except psycopg.Error as exc:
        raise StoreError(f"migrate failed: {type(exc).__name__}: {exc}") from exc
    return before, SCHEMA_VERSION
