"""The message store on PostgreSQL, for one daemon or several sharing one database.

Each call runs in a transaction of its own on a pooled connection (psycopg 3, async). What the
SQLite store gets from being the file's only writer, this store gets from PostgreSQL:

- **Claims** take due rows with ``FOR UPDATE SKIP LOCKED``: two nodes never claim one message
  and never wait for each other. A lease names its node (``lease_node``).
- **Heartbeats**: every node writes its heartbeat every :data:`HEARTBEAT_SECONDS`; one whose
  heartbeat is :data:`NODE_DEAD_SECONDS` old is dead (kill -9, a lost machine), and the first
  node to notice puts its leased messages back in the queue, within about 20 s rather than at
  the end of their lease.
- **LISTEN/NOTIFY**: a write that makes work (an accept, a retry, a taken-back lease, an event
  to post) notifies ``pipecored_work`` within 20 ms of its commit (coalesced, and outside the
  transaction: NOTIFY serializes commits); every node's listener wakes its idle workers.
- **Stats** come from ``message_counts`` plus the insert-only ``message_count_deltas`` that a
  trigger writes on every status move, folded into the counts by one node at a time.
- **Rate limits and alert claims** are rows every node updates in one statement.
- **Group commit**: plain accepts and every attempt's completion queue up while earlier ones
  are written (:class:`GroupCommit`) and are then written together, a batch in a constant number
  of statements whatever its size: a commit and its round trips per batch, not per message.

Byte-exact text: payloads and addresses are stored as ``text`` (the database is UTF-8; jsonb would
reorder keys and normalize numbers), event bodies as ``bytea``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Final, Literal, NamedTuple, TypeVar

import orjson
import psycopg
import psycopg_pool
import structlog
from psycopg.rows import dict_row

from pipecored.errors import StoreError
from pipecored.events.kinds import (
    MESSAGE_RECEIVED,
    RECIPIENT_SUPPRESSED,
    RECIPIENT_UNSUPPRESSED,
    STATUS_EVENTS,
)
from pipecored.provider import InboundMessage, StatusEvent
from pipecored.store.base import (
    ACTIVITY_EXACT_LATENCY,
    ACTIVITY_HOUR,
    EVERY_MESSAGE,
    AcceptResult,
    ActivityBucket,
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
    IdempotencyClaim,
    IdempotencyConflict,
    LogFilter,
    MessageRecord,
    MessageStore,
    NewEvent,
    NewMessage,
    RecipientsSuppressed,
    StoreStats,
    SuppressionRecord,
    activity_starts,
    moves_forward,
    new_message_id,
    refused_accepts,
)
from pipecored.store.completion import (
    Completion,
    EmittedEvent,
    complete,
    completion_events,
    message_events,
    update_values,
)
from pipecored.store.group_commit import GroupCommit
from pipecored.store.inbound import inbound_payload, opt_out_reason
from pipecored.store.postgres.schema import DUE_AT, migrate
from pipecored.tasks import cancel_and_wait

log = structlog.get_logger("pipecored.store")

Conn = psycopg.AsyncConnection[dict[str, Any]]

NOTIFY_CHANNEL: Final = "pipecored_work"
_NOTIFY: Final = "NOTIFY pipecored_work"
NOTIFY_INTERVAL: Final = 0.02
# the group commit of accepts: statements at once, and accepts per statement at most
ACCEPT_WRITERS: Final = 4
ACCEPT_BATCH: Final = 256
# and of completes (each batch locks its messages, so few at once)
COMPLETE_WRITERS: Final = 2
COMPLETE_BATCH: Final = 256
_LISTEN: Final = "LISTEN pipecored_work"
HEARTBEAT_SECONDS: Final = 5.0
NODE_DEAD_SECONDS: Final = 15.0
PENDING_EVENT_TTL: Final = 24 * 3600.0
_HOUR: Final = 3600
# advisory lock keys of the work one node at a time does
_FOLD_LOCK: Final = 0x70697065636F7201
# retention: how often a node looks for what is past it, and how many rows one transaction
# deletes (short transactions: the deliveries around them never wait long)
PRUNE_SECONDS: Final = 60.0
PRUNE_BATCH: Final = 500
_FINISHED: Final = ("sent", "delivered", "read", "failed", "canceled", "received")

_PLAIN_COLUMNS: Final = (
    "id", "seq", "tenant_id", "channel", "direction", "provider", "sender", "status",
    "attempt_count", "provider_message_id", "error_code", "error_message", "created_at",
    "updated_at", "sent_at", "not_before", "route_index", "route_attempts", "lease_token",
    "body_preview", "experiment", "experiment_arm",
)  # fmt: skip


def _json(value: object) -> str:
    return orjson.dumps(value).decode("utf-8")


def _record(row: Mapping[str, Any], attempts: tuple[AttemptRecord, ...] = ()) -> MessageRecord:
    return MessageRecord(
        **{column: row[column] for column in _PLAIN_COLUMNS},
        to=orjson.loads(row["to_json"]),
        payload=orjson.loads(row["payload_json"]),
        attempts=attempts,
    )


def _error(op: str, exc: BaseException) -> StoreError:
    error = StoreError(f"{op} failed: {type(exc).__name__}: {exc}".strip())
    error.__cause__ = exc
    return error


# One statement inserts any number of accepted messages: the columns travel as arrays, so the
# statement's text (and its prepared plan) is the same whatever the number.
_INSERT_MESSAGES: Final = (
    "INSERT INTO messages (id, tenant_id, channel, direction, to_json, sender, status,"
    " created_at, updated_at, not_before, payload_json, experiment, experiment_arm,"
    " lease_until, lease_token, lease_node)"
    " SELECT id, tenant_id, channel, 'outbound', to_json, sender, status, created_at,"
    " created_at, not_before, payload_json, experiment, experiment_arm, lease_until,"
    " lease_token, lease_node FROM unnest("
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::float8[],"
    " %s::float8[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::text[], %s::text[])"
    " AS m(id, tenant_id, channel, to_json, sender, status, created_at, not_before,"
    " payload_json, experiment, experiment_arm, lease_until, lease_token, lease_node)"
    " RETURNING id, seq"
)


# Which of a batch of accepts' (tenant, channel, key) triples are suppressed, in one round trip.
_SUPPRESSED_IN: Final = (
    "SELECT s.tenant_id, s.channel, s.address FROM unnest(%s::text[], %s::text[], %s::text[])"
    " AS u(tenant_id, channel, address) JOIN suppressions s"
    " ON s.tenant_id = u.tenant_id AND s.channel = u.channel AND s.address = u.address"
)


async def _suppressed_in(
    conn: Any, messages: Sequence[NewMessage]
) -> dict[str, RecipientsSuppressed]:
    """The refusals among ``messages`` whose recipients are suppressed, by message id."""
    wanted = list(
        dict.fromkeys((m.tenant_id, m.channel, key) for m in messages for key in m.suppression_keys)
    )
    if not wanted:
        return {}
    cur = await conn.execute(_SUPPRESSED_IN, tuple(map(list, zip(*wanted, strict=True))))
    found = {(row["tenant_id"], row["channel"], row["address"]) for row in await cur.fetchall()}
    return refused_accepts(messages, found) if found else {}


def _insert_params(messages: Sequence[NewMessage], node: str) -> tuple[list[Any], ...]:
    """The columns of ``messages``; a message accepted under a lease is leased to ``node``."""
    return (
        [m.id for m in messages],
        [m.tenant_id for m in messages],
        [m.channel for m in messages],
        [_json(m.to) for m in messages],
        [m.sender for m in messages],
        [m.status for m in messages],
        [m.created_at for m in messages],
        [m.not_before for m in messages],
        [_json(m.payload) for m in messages],
        [m.experiment for m in messages],
        [m.experiment_arm for m in messages],
        [m.lease and m.lease.until for m in messages],
        [m.lease and m.lease.token for m in messages],
        [node if m.lease else None for m in messages],
    )


# A batch of completes, each statement one round trip whatever the batch's size (the values
# travel as arrays). The leased messages are locked in seq order, so that two batches (of this
# node or another) that share messages wait for each other instead of deadlocking.
_LOCK_LEASED: Final = (
    "SELECT seq, id, tenant_id, status, provider, provider_message_id, created_at, sent_at,"
    " error_code, error_message FROM messages"
    " WHERE (id, lease_token) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
    " ORDER BY seq FOR UPDATE"
)
_INSERT_ATTEMPTS: Final = (
    "INSERT INTO attempts (message_seq, provider, started_at, outcome, http_status, error_code,"
    " error_message, duration_ms) SELECT * FROM unnest(%s::int8[], %s::text[], %s::float8[],"
    " %s::text[], %s::int4[], %s::text[], %s::text[], %s::float8[])"
)
# the columns of completion.update_values, in its order
_UPDATE_COMPLETED: Final = (
    "UPDATE messages AS m SET status = u.status, provider = u.provider,"
    " route_index = u.route_index, route_attempts = u.route_attempts,"
    " error_code = u.error_code, error_message = u.error_message, not_before = u.not_before,"
    " provider_message_id = u.provider_message_id, sent_at = u.sent_at,"
    " latency_ms = COALESCE(u.latency_ms, m.latency_ms),"
    " attempt_count = m.attempt_count + u.attempts,"
    " lease_until = NULL, lease_token = NULL, lease_node = NULL, updated_at = u.updated_at"
    " FROM unnest(%s::text[], %s::text[], %s::int4[], %s::int4[], %s::text[], %s::text[],"
    " %s::float8[], %s::text[], %s::float8[], %s::float8[], %s::int4[], %s::float8[],"
    " %s::int8[]) AS u(status, provider, route_index, route_attempts, error_code,"
    " error_message, not_before, provider_message_id, sent_at, latency_ms, attempts,"
    " updated_at, seq)"
    " WHERE m.seq = u.seq RETURNING m.*"
)
# the status callbacks that arrived before the provider's answer named their messages
_TAKE_PENDING: Final = (
    "DELETE FROM pending_events WHERE (tenant_id, provider, provider_message_id) IN"
    " (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))"
    " RETURNING id, tenant_id, provider, provider_message_id, status, error_code, error_message"
)
# events in the order given (their seq is the events API's order), and their deliveries
_INSERT_EVENTS: Final = (
    "INSERT INTO outbox_events (id, tenant_id, type, body, created_at)"
    " SELECT id, tenant_id, type, body, created_at FROM unnest(%s::text[], %s::text[],"
    " %s::text[], %s::bytea[], %s::float8[]) WITH ORDINALITY"
    " AS e(id, tenant_id, type, body, created_at, n) ORDER BY n"
)
_INSERT_DELIVERIES: Final = (
    "INSERT INTO outbox_deliveries (event_id, tenant_id, endpoint, state, attempts,"
    " next_attempt_at, updated_at) SELECT event_id, tenant_id, endpoint, 'pending', 0, at, at"
    " FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[])"
    " AS d(event_id, tenant_id, endpoint, at)"
)


def _columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows of values (at least one) as one list per column: the arrays a statement unnests."""
    return [list(column) for column in zip(*rows, strict=True)]


def _distinct_runs(outcomes: Sequence[AttemptOutcome]) -> list[list[AttemptOutcome]]:
    """The batch cut before each message that comes again in it: each part completes a message
    once, and the parts, completed one after another, do what the calls one by one would."""
    parts: list[list[AttemptOutcome]] = [[]]
    seen: set[str] = set()
    for outcome in outcomes:
        if outcome.message_id in seen:
            parts.append([])
            seen.clear()
        parts[-1].append(outcome)
        seen.add(outcome.message_id)
    return parts


class _Leased(NamedTuple):
    """A message of a batch of completes that its outcome's lease still holds."""

    outcome: AttemptOutcome
    row: Mapping[str, Any]  # the message as it was locked, before the outcome
    done: Completion  # its fields after the outcome


R = TypeVar("R")


async def _outcome(call: Awaitable[Sequence[R | BaseException]]) -> R | BaseException:
    """The one result of a batch of one, or the StoreError that failed it."""
    try:
        [result] = await call
    except StoreError as exc:
        return exc
    return result


def _refused_for_its_data(exc: StoreError) -> bool:
    """The database refused a value of the batch (a NUL byte, a constraint): written again one
    by one, only the item at fault fails."""
    return isinstance(exc.__cause__, psycopg.DataError | psycopg.IntegrityError)


class PostgresStore(MessageStore):
    """:class:`MessageStore` on a PostgreSQL database (see the module docstring)."""

    shared = True

    def __init__(
        self,
        url: str,
        *,
        min_connections: int = 2,
        max_connections: int = 10,
        retention: float | None = None,
    ) -> None:
        self.url = url
        # finished messages and events older than this are deleted (None: kept forever)
        self.retention = retention
        self.node_id = f"node-{secrets.token_hex(6)}"
        self._pool = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=min_connections,
            max_size=max_connections,
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row},
            name="pipecored",
        )
        self._state = "new"
        self._tasks: list[asyncio.Task[None]] = []
        # told when another node (or this one) made work: an accept, a retry, an event
        self._work_listeners: list[Callable[[], None]] = []
        self._notify_pending = asyncio.Event()
        # plain accepts are written together, up to ACCEPT_WRITERS statements at once
        self._accepts: GroupCommit[NewMessage, int] = GroupCommit(
            self._insert_many, concurrency=ACCEPT_WRITERS, max_batch=ACCEPT_BATCH
        )
        # and every attempt's outcome, up to COMPLETE_WRITERS transactions at once
        self._completes: GroupCommit[AttemptOutcome, Completed | None] = GroupCommit(
            self._complete_many, concurrency=COMPLETE_WRITERS, max_batch=COMPLETE_BATCH
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._state != "new":
            raise StoreError(f"open failed: store is {self._state}")
        self._state = "opening"
        try:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                await migrate(conn)
            await self._pool.open(wait=True, timeout=30)
            now = time.time()
            async with self._tx("open") as conn:
                await conn.execute(
                    "INSERT INTO nodes (node_id, started_at, heartbeat_at) VALUES (%s, %s, %s)",
                    (self.node_id, now, now),
                )
            self.taken_back = await self._take_back_dead(now)
        except StoreError:
            self._state = "new"
            await self._pool.close()
            raise
        except Exception as exc:
            self._state = "new"
            await self._pool.close()
            raise _error("open", exc) from exc
        self._state = "open"
        self._tasks = [
            asyncio.create_task(self._listen(), name="store-listen"),
            asyncio.create_task(self._heartbeat(), name="store-heartbeat"),
            asyncio.create_task(self._notifier(), name="store-notify"),
        ]
        if self.retention is not None:
            self._tasks.append(asyncio.create_task(self._prune_loop(), name="store-retention"))

    async def close(self) -> None:
        if self._state != "open":
            self._state = "closed"
            return
        # the accepts and completes already queued are written (or refused)
        await asyncio.gather(self._accepts.drain(), self._completes.drain())
        self._state = "closed"
        self._notify_pending.set()
        # Every loop also stops when it sees the store closed (see pipecored.tasks).
        await cancel_and_wait(self._tasks)
        with contextlib.suppress(Exception):
            # Leaving: what this node still holds (a release that failed) goes back to the
            # queue now, since no heartbeat check will find this node once its row is gone.
            async with self._pool.connection(timeout=5) as conn, conn.transaction():
                cur = await conn.execute(
                    "UPDATE messages SET status = 'queued', lease_until = NULL,"
                    " lease_token = NULL, lease_node = NULL, updated_at = %s"
                    " WHERE status = 'sending' AND lease_node = %s",
                    (time.time(), self.node_id),
                )
                if cur.rowcount:
                    self._notify_soon()
                await conn.execute("DELETE FROM nodes WHERE node_id = %s", (self.node_id,))
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def _conn(self, op: str) -> Any:
        """A pooled connection (autocommit: each statement its own transaction); any database
        error is a StoreError naming ``op``."""
        if self._state not in ("open", "opening"):
            raise StoreError(f"{op} failed: store is not open")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (StoreError, IdempotencyConflict):
            raise
        except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
            raise _error(op, exc) from exc

    @contextlib.asynccontextmanager
    async def _tx(self, op: str) -> Any:
        """A connection in a transaction; any database error is a StoreError naming ``op``."""
        async with self._conn(op) as conn, conn.transaction():
            yield conn

    async def _read(self, op: str, sql: str, params: Any = None) -> list[dict[str, Any]]:
        """One statement, answered in one round trip: a single statement is atomic on its own,
        so it needs no BEGIN and COMMIT of its own (two more round trips)."""
        async with self._conn(op) as conn:
            cur = await conn.execute(sql, params)
            return list(await cur.fetchall())

    # -- the nodes -----------------------------------------------------------------------------

    def _notify_soon(self) -> None:
        """Tell the other nodes there is work, soon after this transaction commits. Coalesced
        (one NOTIFY per :data:`NOTIFY_INTERVAL` at most) and outside the transaction:
        PostgreSQL serializes the commits of transactions that NOTIFY on one global lock, which
        made every accept wait for the others'."""
        self._notify_pending.set()

    async def _notifier(self) -> None:
        while self._state == "open":
            await self._notify_pending.wait()
            await asyncio.sleep(NOTIFY_INTERVAL)  # let the transaction that asked commit first
            self._notify_pending.clear()
            try:
                async with self._pool.connection() as conn:
                    await conn.execute(_NOTIFY)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the other nodes still poll; nothing is lost
                log.warning("store.notify_failed", error=str(exc))

    def on_work(self, listener: Callable[[], None]) -> None:
        self._work_listeners.append(listener)

    def _wake(self) -> None:
        for listener in self._work_listeners:
            listener()

    async def _listen(self) -> None:
        """Wake this node's workers on every ``pipecored_work`` notification; reconnect after a
        lost connection."""
        while self._state == "open":
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(_LISTEN)
                    async for _ in conn.notifies():
                        self._wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("store.listen_lost", error=str(exc))
                await asyncio.sleep(1.0)

    async def _heartbeat(self) -> None:
        while self._state == "open":
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                now = time.time()
                async with self._tx("heartbeat") as conn:
                    await conn.execute(
                        "INSERT INTO nodes (node_id, started_at, heartbeat_at) VALUES (%s, %s, %s)"
                        " ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at",
                        (self.node_id, now, now),
                    )
                taken = await self._take_back_dead(now)
                if taken:
                    log.warning("store.dead_node_leases_taken_back", count=taken)
                await self._fold_counts()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("store.heartbeat_failed", error=str(exc))

    async def _take_back_dead(self, now: float) -> int:
        """Put back in the queue what nodes that stopped beating had leased, and forget them.
        Those calls may have reached the provider: at least once, as promised."""
        async with self._tx("take_back") as conn:
            cur = await conn.execute(
                "DELETE FROM nodes WHERE heartbeat_at < %s AND node_id <> %s RETURNING node_id",
                (now - NODE_DEAD_SECONDS, self.node_id),
            )
            dead = [row["node_id"] for row in await cur.fetchall()]
            if not dead:
                return 0
            cur = await conn.execute(
                "UPDATE messages SET status = 'queued', lease_until = NULL, lease_token = NULL,"
                " lease_node = NULL, updated_at = %s"
                " WHERE status = 'sending' AND lease_node = ANY(%s)",
                (now, dead),
            )
            taken = cur.rowcount
            if taken:
                self._notify_soon()
            return int(taken)

    async def _fold_counts(self) -> None:
        """Fold the count deltas into the per-hour counts, one node at a time."""
        async with self._tx("fold_counts") as conn:
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS ok", (_FOLD_LOCK,))
            row = await cur.fetchone()
            if row is None or not row["ok"]:
                return
            await conn.execute(
                "WITH moved AS (DELETE FROM message_count_deltas RETURNING *)"
                " INSERT INTO message_counts (tenant_id, hour, status, channel, provider, n,"
                " measured) SELECT tenant_id, hour, status, channel, provider, sum(n),"
                " sum(measured)"
                " FROM moved GROUP BY tenant_id, hour, status, channel, provider"
                " ON CONFLICT (tenant_id, hour, status, channel, provider) DO UPDATE"
                " SET n = message_counts.n + EXCLUDED.n,"
                " measured = message_counts.measured + EXCLUDED.measured"
            )
            await conn.execute("DELETE FROM message_counts WHERE n = 0")

    # -- retention ---------------------------------------------------------------------------------

    async def _prune_loop(self) -> None:
        while self._state == "open":
            try:
                messages, events = await self.prune(now=time.time())
                if messages or events:
                    log.info("store.pruned", messages=messages, events=events)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("store.prune_failed", error=str(exc))
            await asyncio.sleep(PRUNE_SECONDS)

    async def prune(self, *, now: float, batch: int = PRUNE_BATCH) -> tuple[int, int]:
        """Delete what is past the retention, ``batch`` rows per transaction: finished messages
        (with their attempts; their counts go with them) and events no endpoint is still waiting
        for. A message still to send is kept however old. Several nodes may prune at once: each
        skips the rows another has locked. Returns (messages, events) deleted."""
        if self.retention is None:
            return 0, 0
        cutoff = now - self.retention
        deleted = [0, 0]
        for index, sql in enumerate((_PRUNE_MESSAGES, _PRUNE_EVENTS)):
            while True:
                async with self._tx("prune") as conn:
                    cur = await conn.execute(sql, {"cutoff": cutoff, "batch": batch})
                    count = cur.rowcount
                deleted[index] += count
                if count < batch:
                    break
                await asyncio.sleep(0)  # let the daemon's other work in between batches
        return deleted[0], deleted[1]

    # -- events ----------------------------------------------------------------------------------

    async def _record_events(self, conn: Conn, events: Sequence[NewEvent | None]) -> None:
        """Store ``events`` in their order, each with a delivery per endpoint it goes to: two
        statements however many there are."""
        stored = [event for event in events if event is not None]
        if not stored:
            return
        await conn.execute(
            _INSERT_EVENTS,
            _columns([(e.id, e.tenant_id, e.type, e.body, e.created_at) for e in stored]),
        )
        deliveries = [
            (e.id, e.tenant_id, endpoint, e.created_at)
            for e in stored
            for endpoint in dict.fromkeys(e.endpoints)
        ]
        if deliveries:
            await conn.execute(_INSERT_DELIVERIES, _columns(deliveries))
            self._notify_soon()

    def _message_events(
        self, row: Mapping[str, Any], emitted: Sequence[EmittedEvent], now: float
    ) -> list[NewEvent | None]:
        """The events ``emitted`` by a change that left the message as ``row``, each with the
        status the message had when it happened."""
        events = self.events
        if events is None or not emitted:
            return []
        return message_events(events, _record(row), emitted, now)

    async def _emit(
        self, conn: Conn, seq: int, emitted: Sequence[EmittedEvent], now: float
    ) -> None:
        if self.events is None or not emitted:
            return
        cur = await conn.execute("SELECT * FROM messages WHERE seq = %s", (seq,))
        row = await cur.fetchone()
        assert row is not None
        await self._record_events(conn, self._message_events(row, emitted, now))

    async def _tenant_event(
        self, conn: Conn, tenant_id: str, event_type: str, data: Mapping[str, Any], now: float
    ) -> None:
        if self.events is not None:
            await self._record_events(
                conn, [self.events.tenant_event(tenant_id, event_type, data, now=now)]
            )

    # -- MessageStore: messages ------------------------------------------------------------------

    async def ping(self) -> None:
        await self._read("ping", "SELECT 1")

    async def accept(
        self, message: NewMessage, idempotency: IdempotencyClaim | None = None
    ) -> AcceptResult:
        if idempotency is None:
            seq = await self._accepts.submit(message)
            return AcceptResult(message.record(seq), replayed=False)
        async with self._tx("accept") as conn:
            refused = await _suppressed_in(conn, [message])
            if refused:
                raise refused[message.id]
            replayed = await self._claim_key(conn, message, idempotency)
            if replayed is not None:
                return AcceptResult(replayed, replayed=True)
            cur = await conn.execute(_INSERT_MESSAGES, _insert_params([message], self.node_id))
            row = await cur.fetchone()
            assert row is not None
            if message.lease is None:
                self._notify_soon()
        return AcceptResult(message.record(row["seq"]), replayed=False)

    async def _insert_many(self, messages: Sequence[NewMessage]) -> list[int | BaseException]:
        """The group commit of plain accepts: one statement (so one round trip and one commit)
        for every accept that arrived while the previous ones were written, after one lookup
        of their suppressed recipients (a refused accept's result is its
        :class:`RecipientsSuppressed`, raised to its caller alone). A batch refused for
        its data (a value the database cannot store) is written again one by one, so that only
        the message at fault fails."""
        try:
            async with self._conn("accept") as conn:
                refused = await _suppressed_in(conn, messages)
                kept = [m for m in messages if m.id not in refused]
                seqs: dict[str, int] = {}
                if kept:
                    cur = await conn.execute(_INSERT_MESSAGES, _insert_params(kept, self.node_id))
                    seqs = {row["id"]: row["seq"] for row in await cur.fetchall()}
        except StoreError as exc:
            if len(messages) == 1 or not _refused_for_its_data(exc):
                raise
            return [await _outcome(self._insert_many([m])) for m in messages]
        if any(m.lease is None for m in kept):  # a leased one is this node's already
            self._notify_soon()
        return [refused[m.id] if m.id in refused else seqs[m.id] for m in messages]

    async def _claim_key(
        self, conn: Conn, message: NewMessage, claim: IdempotencyClaim
    ) -> MessageRecord | None:
        """Take the key for this message in the accept's transaction, or return the message it
        already names. Two nodes racing on one key: the second waits on the first's row."""
        cur = await conn.execute(
            "INSERT INTO idempotency (tenant_id, key, request_hash, message_id, expires_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id, key) DO NOTHING RETURNING key",
            (message.tenant_id, claim.key, claim.request_hash, message.id, claim.expires_at),
        )
        if await cur.fetchone() is not None:
            return None
        cur = await conn.execute(
            "SELECT request_hash, message_id, expires_at FROM idempotency"
            " WHERE tenant_id = %s AND key = %s FOR UPDATE",
            (message.tenant_id, claim.key),
        )
        row = await cur.fetchone()
        if row is not None and row["expires_at"] > message.created_at:
            if row["request_hash"] != claim.request_hash:
                raise IdempotencyConflict(row["message_id"])
            existing = await self._get(conn, row["message_id"])
            if existing is not None:
                return existing
        await conn.execute(
            "UPDATE idempotency SET request_hash = %s, message_id = %s, expires_at = %s"
            " WHERE tenant_id = %s AND key = %s",
            (claim.request_hash, message.id, claim.expires_at, message.tenant_id, claim.key),
        )
        return None

    async def _get(self, conn: Conn, message_id: str) -> MessageRecord | None:
        cur = await conn.execute("SELECT * FROM messages WHERE id = %s", (message_id,))
        row = await cur.fetchone()
        if row is None:
            return None
        cur = await conn.execute(
            "SELECT provider, started_at, outcome, http_status, error_code, error_message,"
            " duration_ms FROM attempts WHERE message_seq = %s ORDER BY started_at, id",
            (row["seq"],),
        )
        attempts = tuple(AttemptRecord(**a) for a in await cur.fetchall())
        return _record(row, attempts)

    async def get(self, message_id: str) -> MessageRecord | None:
        async with self._tx("get") as conn:
            return await self._get(conn, message_id)

    async def claim(
        self,
        *,
        now: float,
        limit: int,
        lease_seconds: float,
        exclude: Collection[tuple[str, str]] = (),
    ) -> list[MessageRecord]:
        pairs = sorted(set(exclude))
        rows = await self._read(
            "claim",
            "UPDATE messages SET status = 'sending', lease_until = %(lease)s,"
            " lease_token = md5(random()::text || clock_timestamp()::text),"
            " lease_node = %(node)s, updated_at = %(now)s"
            " WHERE seq IN (SELECT seq FROM messages"
            f"  WHERE status IN ('queued', 'sending', 'scheduled') AND {DUE_AT} <= %(now)s"
            "  AND (tenant_id, channel) NOT IN"
            "   (SELECT * FROM unnest(%(tenants)s::text[], %(channels)s::text[]))"
            f"  ORDER BY {DUE_AT}, seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
            " RETURNING *",
            {
                "now": now,
                "lease": now + lease_seconds,
                "node": self.node_id,
                "limit": limit,
                "tenants": [t for t, _ in pairs],
                "channels": [c for _, c in pairs],
            },
        )
        return sorted((_record(r) for r in rows), key=lambda r: r.seq)

    async def complete(self, outcome: AttemptOutcome) -> Completed | None:
        return await self._completes.submit(outcome)

    async def _complete_many(
        self, outcomes: Sequence[AttemptOutcome]
    ) -> list[Completed | BaseException | None]:
        """The group commit of completes: every outcome that arrived while the previous ones
        were written, in one transaction of a few statements. A message that comes again in the
        batch is completed by a later transaction, as if the calls ran one after another. A part
        refused for its data is completed again one by one, so that only the outcome at fault
        fails; any other error fails that part alone (the parts before it have committed)."""
        results: list[Completed | BaseException | None] = []
        for part in _distinct_runs(outcomes):
            try:
                results += await self._complete_together(part)
            except StoreError as exc:
                if len(part) == 1 or not _refused_for_its_data(exc):
                    results += [exc] * len(part)
                else:
                    results += [await _outcome(self._complete_together([o])) for o in part]
        return results

    async def _complete_together(
        self, outcomes: Sequence[AttemptOutcome]
    ) -> list[Completed | None]:
        """Complete the outcomes of distinct messages in one transaction: lock the messages
        their leases still hold (None for the others: lease lost), write the attempts and the
        messages' new fields, apply the status callbacks held for them, write their events."""
        now = time.time()
        async with self._tx("complete") as conn:
            cur = await conn.execute(
                _LOCK_LEASED,
                ([o.message_id for o in outcomes], [o.lease_token for o in outcomes]),
            )
            rows = {row["id"]: row for row in await cur.fetchall()}
            leased = [
                _Leased(o, rows[o.message_id], complete(rows[o.message_id], o, now))
                for o in outcomes
                if o.message_id in rows
            ]
            if not leased:
                return [None] * len(outcomes)
            attempts = [
                (c.row["seq"], a.provider, a.started_at, a.outcome, a.http_status, a.error_code,
                 a.error_message, a.duration_ms)
                for c in leased
                if (a := c.outcome.attempt) is not None
            ]  # fmt: skip
            if attempts:
                await conn.execute(_INSERT_ATTEMPTS, _columns(attempts))
            cur = await conn.execute(
                _UPDATE_COMPLETED,
                _columns([update_values(c.done, c.outcome, now, c.row["seq"]) for c in leased]),
            )
            updated = {row["id"]: row for row in await cur.fetchall()}
            deferred = await self._apply_held(conn, leased, now)
            if self.events is not None:
                await self._emit_completions(conn, leased, updated, deferred, now)
            if any(c.done.status == "queued" for c in leased):
                self._notify_soon()
        return [
            Completed(deferred.get(o.message_id, ())) if o.message_id in rows else None
            for o in outcomes
        ]

    async def _apply_held(
        self, conn: Conn, leased: Sequence[_Leased], now: float
    ) -> dict[str, tuple[str, ...]]:
        """Apply, oldest first, the status callbacks that arrived before the provider's answer
        named their message (rare: usually the one DELETE finds none). Returns the statuses
        they moved each message on to, by message id."""
        by_key: dict[tuple[str, str, str], _Leased] = {}
        for c in leased:
            if c.done.provider is not None and c.done.provider_message_id is not None:
                key = (c.row["tenant_id"], c.done.provider, c.done.provider_message_id)
                by_key.setdefault(key, c)  # two messages of one key: the first takes them
        if not by_key:
            return {}
        cur = await conn.execute(_TAKE_PENDING, _columns(list(by_key)))
        held: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for event in sorted(await cur.fetchall(), key=lambda e: e["id"]):
            key = (event["tenant_id"], event["provider"], event["provider_message_id"])
            held.setdefault(key, []).append(event)
        deferred = {}
        for key, events in held.items():
            c = by_key[key]
            status, reached = c.done.status, []
            for event in events:
                moved = await self._move(
                    conn,
                    c.row["seq"],
                    status,
                    event["status"],
                    event["error_code"],
                    event["error_message"],
                    now,
                )
                if moved != status:
                    reached.append(moved)
                status = moved
            deferred[c.outcome.message_id] = tuple(reached)
        return deferred

    async def _emit_completions(
        self,
        conn: Conn,
        leased: Sequence[_Leased],
        updated: Mapping[str, Mapping[str, Any]],
        deferred: Mapping[str, tuple[str, ...]],
        now: float,
    ) -> None:
        """The batch's events, built from each message as the UPDATE returned it, or as held
        callbacks then moved it on (read again: rare), stored in two statements."""
        rows = dict(updated)
        moved = [rows[message_id]["seq"] for message_id, reached in deferred.items() if reached]
        if moved:
            cur = await conn.execute("SELECT * FROM messages WHERE seq = ANY(%s)", (moved,))
            rows.update({row["id"]: row for row in await cur.fetchall()})
        events: list[NewEvent | None] = []
        for c in leased:
            message_id = c.outcome.message_id
            reached = deferred.get(message_id, ())
            emitted = completion_events(c.outcome, c.row["status"], c.done.status, reached)
            events += self._message_events(rows[message_id], emitted, now)
        await self._record_events(conn, events)

    async def _move(
        self,
        conn: Conn,
        seq: int,
        current: str,
        new: str,
        error_code: str | None,
        error_message: str | None,
        now: float,
    ) -> str:
        if not moves_forward(current, new):
            return current
        if new == "failed":
            await conn.execute(
                "UPDATE messages SET status = 'failed', error_code = %s, error_message = %s,"
                " updated_at = %s WHERE seq = %s",
                (error_code, error_message, now, seq),
            )
        else:
            await conn.execute(
                "UPDATE messages SET status = %s, updated_at = %s WHERE seq = %s", (new, now, seq)
            )
        return new

    async def _apply_pending(
        self,
        conn: Conn,
        seq: int,
        status: str,
        tenant_id: str,
        provider: str,
        provider_message_id: str,
        now: float,
    ) -> tuple[str, ...]:
        key = (tenant_id, provider, provider_message_id)
        cur = await conn.execute(
            "DELETE FROM pending_events WHERE tenant_id = %s AND provider = %s"
            " AND provider_message_id = %s RETURNING id, status, error_code, error_message",
            key,
        )
        events = sorted(await cur.fetchall(), key=lambda e: e["id"])
        reached: list[str] = []
        for event in events:
            moved = await self._move(
                conn, seq, status, event["status"], event["error_code"], event["error_message"], now
            )
            if moved != status:
                reached.append(moved)
            status = moved
        return tuple(reached)

    async def release(self, message_id: str, lease_token: str) -> None:
        async with self._tx("release") as conn:
            await conn.execute(
                "UPDATE messages SET status = CASE status WHEN 'sending' THEN 'queued'"
                " ELSE status END, lease_until = NULL, lease_token = NULL, lease_node = NULL,"
                " updated_at = %s WHERE id = %s AND lease_token = %s",
                (time.time(), message_id, lease_token),
            )
            self._notify_soon()

    async def next_due(self, exclude: Collection[tuple[str, str]] = ()) -> float | None:
        pairs = sorted(set(exclude))
        rows = await self._read(
            "next_due",
            # the first entry of the queue index that is not left out
            f"SELECT {DUE_AT} AS due FROM messages"
            " WHERE status IN ('queued', 'sending', 'scheduled') AND (tenant_id, channel) NOT IN"
            f" (SELECT * FROM unnest(%s::text[], %s::text[])) ORDER BY {DUE_AT} LIMIT 1",
            ([t for t, _ in pairs], [c for _, c in pairs]),
        )
        return float(rows[0]["due"]) if rows else None

    async def apply_status(
        self, tenant_id: str, provider: str, event: StatusEvent
    ) -> AppliedStatus | None:
        now = time.time()
        async with self._tx("apply_status") as conn:
            row = None
            if event.message_id is not None:
                cur = await conn.execute(
                    "SELECT seq, id, status, channel, experiment, experiment_arm FROM messages"
                    " WHERE id = %s AND tenant_id = %s"
                    " AND direction = 'outbound' FOR UPDATE",
                    (event.message_id, tenant_id),
                )
                row = await cur.fetchone()
            if row is None and event.provider_message_id is not None:
                cur = await conn.execute(
                    "SELECT seq, id, status, channel, experiment, experiment_arm FROM messages"
                    " WHERE tenant_id = %s AND provider = %s"
                    " AND provider_message_id = %s AND direction = 'outbound'"
                    " ORDER BY seq DESC LIMIT 1 FOR UPDATE",
                    (tenant_id, provider, event.provider_message_id),
                )
                row = await cur.fetchone()
            if row is not None:
                ended = await self._move(
                    conn,
                    row["seq"],
                    row["status"],
                    event.status,
                    event.error_code,
                    event.error_message,
                    now,
                )
                moved = ended != row["status"]
                if moved and ended in STATUS_EVENTS:
                    await self._emit(conn, row["seq"], [(STATUS_EVENTS[ended], None, None)], now)
                return AppliedStatus(
                    str(row["id"]),
                    moved=moved,
                    experiment=row["experiment"],
                    experiment_arm=row["experiment_arm"],
                )
            if event.provider_message_id is not None:
                await conn.execute(
                    "DELETE FROM pending_events WHERE received_at < %s", (now - PENDING_EVENT_TTL,)
                )
                await conn.execute(
                    "INSERT INTO pending_events (tenant_id, provider, provider_message_id, status,"
                    " error_code, error_message, occurred_at, received_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        tenant_id,
                        provider,
                        event.provider_message_id,
                        event.status,
                        event.error_code,
                        event.error_message,
                        None if event.occurred_at is None else event.occurred_at.timestamp(),
                        now,
                    ),
                )
            return None

    async def add_inbound(
        self,
        tenant_id: str,
        channel: str,
        provider: str,
        message: InboundMessage,
        *,
        opt_out: Literal["stop", "start"] | None = None,
    ) -> tuple[str, bool]:
        now = time.time()
        payload = inbound_payload(message)
        message_id = new_message_id()
        async with self._tx("add_inbound") as conn:
            cur = await conn.execute(
                "INSERT INTO messages (id, tenant_id, channel, direction, provider, to_json,"
                " sender, status, provider_message_id, created_at, updated_at, payload_json,"
                " body_preview) VALUES (%s, %s, %s, 'inbound', %s, %s, %s, 'received', %s, %s,"
                " %s, %s, %s) ON CONFLICT (tenant_id, provider, provider_message_id)"
                " WHERE direction = 'inbound' AND provider_message_id IS NOT NULL DO NOTHING"
                " RETURNING seq",
                (
                    message_id,
                    tenant_id,
                    channel,
                    provider,
                    _json(message.recipient),
                    message.sender,
                    message.provider_message_id,
                    now,
                    now,
                    _json(payload),
                    message.body,
                ),
            )
            row = await cur.fetchone()
            if row is None:  # the provider's retry of a message already stored
                cur = await conn.execute(
                    "SELECT id FROM messages WHERE tenant_id = %s AND provider = %s"
                    " AND provider_message_id = %s AND direction = 'inbound' LIMIT 1",
                    (tenant_id, provider, message.provider_message_id),
                )
                existing = await cur.fetchone()
                assert existing is not None
                return str(existing["id"]), False
            await self._emit(conn, row["seq"], [(MESSAGE_RECEIVED, None, None)], now)
            if opt_out == "stop":
                reason = opt_out_reason(message)
                await self._suppress(conn, tenant_id, channel, message.sender, reason, now)
            elif opt_out == "start":
                await self._unsuppress(conn, tenant_id, channel, message.sender, now)
        return message_id, True

    async def cancel(self, message_id: str, *, now: float) -> MessageRecord | None:
        async with self._tx("cancel") as conn:
            cur = await conn.execute(
                "UPDATE messages SET status = 'canceled', not_before = NULL, updated_at = %s"
                " WHERE id = %s AND direction = 'outbound' AND status IN ('scheduled', 'queued')"
                " RETURNING seq",
                (now, message_id),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            record = await self._get(conn, message_id)
            assert record is not None
            if self.events is not None:
                await self._record_events(
                    conn, [self.events.message_event(STATUS_EVENTS["canceled"], record, now=now)]
                )
            return record

    async def requeue(self, message_id: str, *, now: float) -> MessageRecord | None:
        async with self._tx("requeue") as conn:
            cur = await conn.execute(
                "UPDATE messages SET status = 'queued', not_before = NULL, route_index = 0,"
                " route_attempts = 0, error_code = NULL, error_message = NULL,"
                " lease_until = NULL, lease_token = NULL, lease_node = NULL, updated_at = %s"
                " WHERE id = %s AND direction = 'outbound' AND status = 'failed' RETURNING seq",
                (now, message_id),
            )
            if await cur.fetchone() is None:
                return None
            self._notify_soon()
            return await self._get(conn, message_id)

    async def list_messages(
        self, tenant_id: str, *, limit: int, where: LogFilter = EVERY_MESSAGE
    ) -> list[MessageRecord]:
        terms = ["tenant_id = %s"]
        params: list[object] = [tenant_id]
        for column, value in (
            ("seq <", where.before_seq),
            ("channel =", where.channel),
            ("status =", where.status),
            ("direction =", where.direction),
        ):
            if value is not None:
                terms.append(f"{column} %s")
                params.append(value)
        params.append(limit)
        rows = await self._read(
            "list_messages",
            f"SELECT * FROM messages WHERE {' AND '.join(terms)} ORDER BY seq DESC LIMIT %s",
            params,
        )
        return [_record(r) for r in rows]

    async def stats(self, tenant_id: str, *, since: float | None = None) -> StoreStats:
        by_status: dict[str, int] = {}
        by_channel: dict[str, int] = {}
        by_provider: dict[str, int] = {}
        measured = 0
        first_hour = -(2**62) if since is None else math.ceil(since / _HOUR)
        async with self._tx("stats") as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur = await conn.execute(
                "SELECT status, channel, provider, sum(n)::bigint AS n,"
                " sum(measured)::bigint AS measured FROM ("
                " SELECT status, channel, provider, n, measured FROM message_counts"
                "  WHERE tenant_id = %(t)s AND hour >= %(h)s"
                " UNION ALL SELECT status, channel, provider, n, measured"
                "  FROM message_count_deltas WHERE tenant_id = %(t)s AND hour >= %(h)s) AS c"
                " GROUP BY status, channel, provider HAVING sum(n) > 0",
                {"t": tenant_id, "h": first_hour},
            )
            groups = list(await cur.fetchall())
            if since is not None and since < first_hour * _HOUR:
                cur = await conn.execute(
                    "SELECT status, channel, COALESCE(provider, '') AS provider, count(*) AS n,"
                    " count(latency_ms) AS measured FROM messages WHERE tenant_id = %(t)s"
                    " AND created_at >= %(s)s AND created_at < (%(h)s + 1) * 3600"
                    " AND floor(created_at / 3600) < %(h)s AND direction = 'outbound'"
                    " GROUP BY status, channel, COALESCE(provider, '')",
                    {"t": tenant_id, "s": since, "h": first_hour},
                )
                groups += list(await cur.fetchall())
            for g in groups:
                n = int(g["n"])
                measured += int(g["measured"])
                by_status[g["status"]] = by_status.get(g["status"], 0) + n
                by_channel[g["channel"]] = by_channel.get(g["channel"], 0) + n
                if g["provider"]:
                    by_provider[g["provider"]] = by_provider.get(g["provider"], 0) + n

            async def percentile(p: float) -> float | None:
                if measured == 0:
                    return None
                rank = min(measured - 1, max(0, math.ceil(p * measured) - 1))
                order, offset = (
                    ("ASC", rank)
                    if rank <= measured // 2
                    else (
                        "DESC",
                        measured - 1 - rank,
                    )
                )
                cur = await conn.execute(
                    "SELECT latency_ms FROM messages WHERE tenant_id = %s"
                    " AND latency_ms IS NOT NULL AND (%s::float8 IS NULL OR created_at >= %s)"
                    f" ORDER BY latency_ms {order} LIMIT 1 OFFSET %s",
                    (tenant_id, since, since, offset),
                )
                row = await cur.fetchone()
                return None if row is None else float(row["latency_ms"])

            latency = {
                "p50": await percentile(0.50),
                "p95": await percentile(0.95),
                "p99": await percentile(0.99),
            }
        done = sum(by_status.get(s, 0) for s in ("delivered", "read"))
        settled = done + by_status.get("sent", 0) + by_status.get("failed", 0)
        return StoreStats(
            total=sum(by_status.values()),
            by_status=by_status,
            by_channel=by_channel,
            by_provider=by_provider,
            delivery_rate=done / settled if settled else None,
            latency_ms=latency,
        )

    async def queue_depth(self, *, now: float) -> tuple[int, float]:
        rows = await self._read(
            "queue_depth",
            "SELECT count(*) AS n, min(created_at) AS oldest FROM messages"
            " WHERE status IN ('queued', 'sending', 'scheduled') AND status <> 'scheduled'",
        )
        oldest = rows[0]["oldest"]
        return int(rows[0]["n"]), 0.0 if oldest is None else max(0.0, now - oldest)

    async def purge_idempotency(self, *, now: float) -> int:
        async with self._tx("purge_idempotency") as conn:
            cur = await conn.execute("DELETE FROM idempotency WHERE expires_at <= %s", (now,))
            return int(cur.rowcount)

    # -- suppressions --------------------------------------------------------------------------

    async def _suppress(
        self,
        conn: Conn,
        tenant_id: str,
        channel: str,
        address: str,
        reason: str | None,
        now: float,
    ) -> bool:
        cur = await conn.execute(
            "INSERT INTO suppressions (tenant_id, channel, address, reason, created_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING seq",
            (tenant_id, channel, address, reason, now),
        )
        added = await cur.fetchone() is not None
        if added:
            data = {"channel": channel, "address": address, "reason": reason}
            await self._tenant_event(conn, tenant_id, RECIPIENT_SUPPRESSED, data, now)
        return added

    async def _unsuppress(
        self, conn: Conn, tenant_id: str, channel: str, address: str, now: float
    ) -> bool:
        cur = await conn.execute(
            "DELETE FROM suppressions WHERE tenant_id = %s AND channel = %s AND address = %s",
            (tenant_id, channel, address),
        )
        removed = cur.rowcount == 1
        if removed:
            data = {"channel": channel, "address": address}
            await self._tenant_event(conn, tenant_id, RECIPIENT_UNSUPPRESSED, data, now)
        return removed

    async def suppress(
        self, tenant_id: str, channel: str, address: str, *, reason: str | None, now: float
    ) -> bool:
        async with self._tx("suppress") as conn:
            return await self._suppress(conn, tenant_id, channel, address, reason, now)

    async def unsuppress(self, tenant_id: str, channel: str, address: str) -> bool:
        async with self._tx("unsuppress") as conn:
            return await self._unsuppress(conn, tenant_id, channel, address, time.time())

    async def list_suppressions(
        self, tenant_id: str, *, channel: str | None, after_seq: int | None, limit: int
    ) -> list[SuppressionRecord]:
        rows = await self._read(
            "list_suppressions",
            "SELECT seq, tenant_id, channel, address, reason, created_at FROM suppressions"
            " WHERE tenant_id = %s AND seq > %s AND (%s::text IS NULL OR channel = %s)"
            " ORDER BY seq LIMIT %s",
            (tenant_id, after_seq or 0, channel, channel, limit),
        )
        return [SuppressionRecord(**r) for r in rows]

    # -- the events outbox -----------------------------------------------------------------------

    async def add_event(self, event: NewEvent) -> None:
        async with self._tx("add_event") as conn:
            await self._record_events(conn, [event])

    async def claim_event_deliveries(
        self,
        *,
        now: float,
        limit: int,
        lease_seconds: float,
        per_endpoint: int,
        exclude_endpoints: Collection[str] = (),
    ) -> list[EventDelivery]:
        rows = await self._read(
            "claim_event_deliveries",
            "WITH due AS (SELECT event_id, endpoint FROM ("
            "  SELECT event_id, endpoint, next_attempt_at, row_number() OVER"
            "   (PARTITION BY endpoint ORDER BY next_attempt_at) AS rank"
            "  FROM outbox_deliveries WHERE state = 'pending' AND next_attempt_at <= %(now)s"
            "  AND NOT (endpoint = ANY(%(busy)s))) d WHERE rank <= %(per)s"
            "  ORDER BY next_attempt_at LIMIT %(limit)s),"
            " locked AS (SELECT d.event_id, d.endpoint FROM outbox_deliveries d"
            "  JOIN due USING (event_id, endpoint) WHERE d.state = 'pending'"
            "  AND d.next_attempt_at <= %(now)s FOR UPDATE OF d SKIP LOCKED)"
            " UPDATE outbox_deliveries o SET next_attempt_at = %(lease)s"
            " FROM locked, outbox_events e"
            " WHERE o.event_id = locked.event_id AND o.endpoint = locked.endpoint"
            " AND e.id = o.event_id"
            " RETURNING o.event_id, o.tenant_id, o.endpoint, o.attempts, e.type, e.body,"
            " e.created_at",
            {
                "now": now,
                "lease": now + lease_seconds,
                "per": per_endpoint,
                "limit": limit,
                "busy": sorted(set(exclude_endpoints)),
            },
        )
        return sorted(
            (
                EventDelivery(
                    event_id=r["event_id"],
                    tenant_id=r["tenant_id"],
                    endpoint=r["endpoint"],
                    type=r["type"],
                    body=bytes(r["body"]),
                    attempts=r["attempts"],
                    created_at=r["created_at"],
                )
                for r in rows
            ),
            key=lambda d: (d.created_at, d.event_id),
        )

    async def finish_event_delivery(self, result: DeliveryResult) -> None:
        if result.delivered:
            state, next_at = "delivered", None
        elif result.retry_at is not None:
            state, next_at = "pending", result.retry_at
        else:
            state, next_at = "failed", None
        async with self._tx("finish_event_delivery") as conn:
            await conn.execute(
                "UPDATE outbox_deliveries SET state = %s, attempts = attempts + 1,"
                " next_attempt_at = %s, last_status_code = %s, last_error = %s, updated_at = %s"
                " WHERE event_id = %s AND endpoint = %s AND state = 'pending'",
                (
                    state,
                    next_at,
                    result.status_code,
                    result.error,
                    result.finished_at,
                    result.event_id,
                    result.endpoint,
                ),
            )

    async def next_event_due(self, exclude_endpoints: Collection[str] = ()) -> float | None:
        rows = await self._read(
            "next_event_due",
            "SELECT min(next_attempt_at) AS due FROM outbox_deliveries WHERE state = 'pending'"
            " AND NOT (endpoint = ANY(%s))",
            (sorted(set(exclude_endpoints)),),
        )
        due = rows[0]["due"]
        return None if due is None else float(due)

    async def list_events(
        self, tenant_id: str, *, after_seq: int | None, limit: int
    ) -> list[EventRecord]:
        """Oldest first in commit order: by transaction id, then seq, and only events whose
        transaction is older than every transaction still running on this database, so that an
        event committed late can never fall behind a cursor already handed out."""
        async with self._tx("list_events") as conn:
            after_tx = None
            if after_seq is not None:
                cur = await conn.execute(
                    "SELECT tx FROM outbox_events WHERE seq = %s", (after_seq,)
                )
                found = await cur.fetchone()
                after_tx = None if found is None else found["tx"]
            if after_seq is None:
                position, params = "", []
            elif after_tx is None:  # pruned by retention: the seq alone
                position, params = " AND seq > %s", [after_seq]
            else:
                position, params = " AND (tx, seq) > (%s::xid8, %s)", [after_tx, after_seq]
            cur = await conn.execute(
                "SELECT seq, id, tenant_id, type, body, created_at FROM outbox_events"
                " WHERE tenant_id = %s AND tx < (" + _EVENT_HORIZON + ")"
                f"{position} ORDER BY tx, seq LIMIT %s",
                [tenant_id, *params, limit],
            )
            events = list(await cur.fetchall())
            if not events:
                return []
            cur = await conn.execute(
                "SELECT event_id, endpoint, state, attempts, next_attempt_at, last_status_code,"
                " last_error, updated_at FROM outbox_deliveries WHERE event_id = ANY(%s)"
                " ORDER BY endpoint",
                ([e["id"] for e in events],),
            )
            deliveries: dict[str, list[EndpointDelivery]] = {}
            for d in await cur.fetchall():
                deliveries.setdefault(d["event_id"], []).append(
                    EndpointDelivery(
                        endpoint=d["endpoint"],
                        state=d["state"],
                        attempts=d["attempts"],
                        next_attempt_at=d["next_attempt_at"] if d["state"] == "pending" else None,
                        last_status_code=d["last_status_code"],
                        last_error=d["last_error"],
                        updated_at=d["updated_at"],
                    )
                )
        return [
            EventRecord(
                seq=e["seq"],
                id=e["id"],
                tenant_id=e["tenant_id"],
                type=e["type"],
                body=bytes(e["body"]),
                created_at=e["created_at"],
                deliveries=tuple(deliveries.get(e["id"], ())),
            )
            for e in events
        ]

    async def outbox_depth(self, *, now: float) -> tuple[int, float]:
        rows = await self._read(
            "outbox_depth",
            "SELECT count(*) AS n, min(e.created_at) AS oldest FROM outbox_deliveries d"
            " JOIN outbox_events e ON e.id = d.event_id WHERE d.state = 'pending'",
        )
        oldest = rows[0]["oldest"]
        return int(rows[0]["n"]), 0.0 if oldest is None else max(0.0, now - float(oldest))

    async def endpoint_health(
        self, tenant_id: str, endpoints: Sequence[str]
    ) -> list[EndpointHealth]:
        health = []
        async with self._tx("endpoint_health") as conn:
            for endpoint in dict.fromkeys(endpoints):
                cur = await conn.execute(
                    "SELECT state, count(*) AS n FROM outbox_deliveries WHERE tenant_id = %s"
                    " AND endpoint = %s AND state IN ('pending', 'failed') GROUP BY state",
                    (tenant_id, endpoint),
                )
                counts = {r["state"]: int(r["n"]) for r in await cur.fetchall()}
                cur = await conn.execute(
                    "SELECT last_status_code, last_error, updated_at FROM outbox_deliveries"
                    " WHERE tenant_id = %s AND endpoint = %s AND attempts > 0"
                    " ORDER BY updated_at DESC LIMIT 1",
                    (tenant_id, endpoint),
                )
                last = await cur.fetchone()
                health.append(
                    EndpointHealth(
                        tenant_id=tenant_id,
                        endpoint=endpoint,
                        pending=counts.get("pending", 0),
                        failed=counts.get("failed", 0),
                        last_status_code=None if last is None else last["last_status_code"],
                        last_error=None if last is None else last["last_error"],
                        last_attempt_at=None if last is None else last["updated_at"],
                    )
                )
        return health

    # -- provider experiments ----------------------------------------------------------------------

    async def experiment_results(self, tenant_id: str) -> list[ArmResult]:
        async with self._tx("experiment_results") as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur = await conn.execute(
                "SELECT channel, experiment, experiment_arm, status, count(*) AS n FROM messages"
                " WHERE tenant_id = %s AND experiment IS NOT NULL"
                " GROUP BY experiment, experiment_arm, channel, status",
                (tenant_id,),
            )
            arms: dict[tuple[str, str, str], dict[str, int]] = {}
            for g in await cur.fetchall():
                key = (g["channel"], g["experiment"], g["experiment_arm"])
                arms.setdefault(key, {})[g["status"]] = int(g["n"])
            results = []
            for (channel, experiment, arm), by_status in sorted(arms.items()):
                cur = await conn.execute(
                    "SELECT count(*) AS n FROM messages WHERE tenant_id = %s AND experiment = %s"
                    " AND experiment_arm = %s AND latency_ms IS NOT NULL",
                    (tenant_id, experiment, arm),
                )
                row = await cur.fetchone()
                measured = int(row["n"]) if row else 0
                latencies: dict[float, float | None] = {}
                for p in (0.50, 0.95):
                    latencies[p] = None
                    if measured:
                        rank = min(measured - 1, max(0, math.ceil(p * measured) - 1))
                        cur = await conn.execute(
                            "SELECT latency_ms FROM messages WHERE tenant_id = %s"
                            " AND experiment = %s AND experiment_arm = %s"
                            " AND latency_ms IS NOT NULL ORDER BY latency_ms LIMIT 1 OFFSET %s",
                            (tenant_id, experiment, arm, rank),
                        )
                        found = await cur.fetchone()
                        latencies[p] = float(found["latency_ms"]) if found else None
                results.append(
                    ArmResult(
                        channel=channel,
                        experiment=experiment,
                        arm=arm,
                        messages=sum(by_status.values()),
                        sent=by_status.get("sent", 0),
                        delivered=by_status.get("delivered", 0) + by_status.get("read", 0),
                        failed=by_status.get("failed", 0),
                        latency_p50_ms=latencies[0.50],
                        latency_p95_ms=latencies[0.95],
                    )
                )
        return results

    # -- the console's charts ----------------------------------------------------------------------

    async def activity(
        self, tenant_id: str, *, since: float, until: float, bucket_seconds: int
    ) -> list[ActivityBucket]:
        starts = activity_starts(since=since, until=until, bucket_seconds=bucket_seconds)
        if not starts:
            return []
        hours_per_bucket = bucket_seconds // ACTIVITY_HOUR
        first_hour = int(starts[0]) // ACTIVITY_HOUR
        end_hour = int(starts[-1]) // ACTIVITY_HOUR + hours_per_bucket
        counts: dict[float, dict[str, int]] = {start: {} for start in starts}
        measured: dict[float, int] = dict.fromkeys(starts, 0)
        async with self._tx("activity") as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur = await conn.execute(
                "SELECT hour, status, sum(n)::bigint AS n, sum(measured)::bigint AS measured"
                " FROM (SELECT hour, status, n, measured FROM message_counts"
                "  WHERE tenant_id = %(t)s AND hour >= %(a)s AND hour < %(b)s"
                "  UNION ALL SELECT hour, status, n, measured FROM message_count_deltas"
                "  WHERE tenant_id = %(t)s AND hour >= %(a)s AND hour < %(b)s) AS c"
                " GROUP BY hour, status",
                {"t": tenant_id, "a": first_hour, "b": end_hour},
            )
            for row in await cur.fetchall():
                start = float((int(row["hour"]) // hours_per_bucket) * bucket_seconds)
                if start not in counts:
                    continue
                by_status = counts[start]
                by_status[row["status"]] = by_status.get(row["status"], 0) + int(row["n"])
                measured[start] += int(row["measured"])
            latencies = {
                start: await self._bucket_latencies(
                    conn, tenant_id, start, start + bucket_seconds, measured[start]
                )
                for start in starts
                if measured[start] > 0
            }
        buckets = []
        for start in starts:
            by_status = counts[start]
            values, sampled = latencies.get(start, ([], False))
            buckets.append(
                ActivityBucket(
                    start=start,
                    accepted=sum(by_status.values()),
                    sent=by_status.get("sent", 0),
                    delivered=by_status.get("delivered", 0) + by_status.get("read", 0),
                    failed=by_status.get("failed", 0),
                    latency_p50_ms=_nearest_rank(values, 0.50),
                    latency_p95_ms=_nearest_rank(values, 0.95),
                    latency_sampled=sampled,
                )
            )
        return buckets

    async def _bucket_latencies(
        self, conn: Conn, tenant_id: str, start: float, end: float, measured: int
    ) -> tuple[list[float], bool]:
        """Every latency of the bucket while it has few; else a sample of them spread evenly
        over its time (a few after each of 64 points), from the (tenant, created_at) index."""
        if measured <= ACTIVITY_EXACT_LATENCY:
            cur = await conn.execute(
                "SELECT latency_ms FROM messages WHERE tenant_id = %s AND created_at >= %s"
                " AND created_at < %s AND latency_ms IS NOT NULL",
                (tenant_id, start, end),
            )
            return sorted(float(r["latency_ms"]) for r in await cur.fetchall()), False
        points = 64
        per_point = ACTIVITY_EXACT_LATENCY // points
        cur = await conn.execute(
            "SELECT s.latency_ms FROM generate_series(0, %(n)s - 1) AS g(i),"
            " LATERAL (SELECT latency_ms FROM messages WHERE tenant_id = %(t)s"
            "  AND created_at >= %(a)s + g.i * (%(b)s - %(a)s) / %(n)s AND created_at < %(b)s"
            "  AND latency_ms IS NOT NULL ORDER BY created_at LIMIT %(k)s) AS s",
            {"n": points, "t": tenant_id, "a": start, "b": end, "k": per_point},
        )
        return sorted(float(r["latency_ms"]) for r in await cur.fetchall()), True

    # -- coordination ------------------------------------------------------------------------------

    async def reserve_rate(self, key: str, *, per_second: float, burst: int, now: float) -> float:
        interval = 1.0 / per_second
        rows = await self._read(
            "reserve_rate",
            "INSERT INTO rate_limits (key, tat) VALUES (%(key)s, %(now)s + %(i)s)"
            " ON CONFLICT (key) DO UPDATE SET tat = GREATEST(rate_limits.tat, %(now)s) + %(i)s"
            " RETURNING tat",
            {"key": key, "now": now, "i": interval},
        )
        start = float(rows[0]["tat"]) - interval
        return max(0.0, start - (burst - 1) * interval - now)

    async def claim_once(self, key: str, *, until: float, now: float) -> bool:
        rows = await self._read(
            "claim_once",
            "INSERT INTO claims (key, until) VALUES (%(key)s, %(until)s)"
            " ON CONFLICT (key) DO UPDATE SET until = EXCLUDED.until"
            " WHERE claims.until <= %(now)s RETURNING key",
            {"key": key, "until": until, "now": now},
        )
        return bool(rows)


# The oldest transaction that may still write events: the oldest one running at the query's
# snapshot, except those positively seen running on another database of the cluster (a long
# transaction there, a bulk load or a backup, cannot write here, so it must not hold back the
# events listing; one not seen, or seen without the privilege, still counts).
_EVENT_HORIZON: Final = (
    "SELECT COALESCE(min(x), pg_snapshot_xmax(pg_current_snapshot()))"
    " FROM pg_snapshot_xip(pg_current_snapshot()) AS x"
    " WHERE (x::text::bigint %% 4294967296)::text::xid NOT IN ("
    "  SELECT backend_xid FROM pg_stat_activity"
    "  WHERE datname <> current_database() AND backend_xid IS NOT NULL)"
)

_PRUNE_MESSAGES: Final = (
    "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages"
    " WHERE created_at < %(cutoff)s AND status IN ("
    + ", ".join(f"'{status}'" for status in _FINISHED)
    + ") ORDER BY created_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED)"
)
_PRUNE_EVENTS: Final = (
    "DELETE FROM outbox_events WHERE seq IN (SELECT e.seq FROM outbox_events AS e"
    " WHERE e.created_at < %(cutoff)s AND NOT EXISTS (SELECT 1 FROM outbox_deliveries AS d"
    "  WHERE d.event_id = e.id AND d.state = 'pending')"
    " ORDER BY e.created_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED)"
)


def _nearest_rank(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile of sorted ``values`` (as stats computes it)."""
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(p * len(values)) - 1))]
