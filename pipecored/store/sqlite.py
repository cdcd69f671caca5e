"""The message store on one SQLite file.

Concurrency model
-----------------
SQLite allows one writer at a time, and with ``synchronous=FULL`` every commit costs an fsync.
So every write goes through **one writer thread** with its own connection: it takes every job
waiting in its queue (up to :data:`MAX_BATCH`), runs them in one transaction, commits once, and
only then resolves the jobs' futures. N concurrent ``accept()`` calls thus cost about one fsync,
and none of them returns before its message is on disk. A job that fails (e.g. with
:class:`IdempotencyConflict`) fails alone: the batch is rolled back and run again with each job
inside its own ``SAVEPOINT``. The first run has no savepoints, and inserts the batch's plain
accepts with one statement, because each statement releases the GIL and must win it back from
the busy event loop. When the commit itself fails (disk full, I/O
error) every job of the batch gets a :class:`StoreError` and none of it is kept; the writer goes
on with the next batch.

Reads run on a small thread pool, each thread with its own read-only connection: in WAL mode
they see the last commit and never wait for the writer. Whether a send's recipients are
suppressed is not a read before its accept but part of the accept's write (one lookup for all
the accepts of a batch): a read on another connection would find its pages dropped by every
commit, and the writer's are warm.

Stats read per-hour counts that triggers keep (see ``sqlite_schema``), and latency percentiles
with ``LIMIT 1 OFFSET k`` on an index, so they stay fast for a tenant with millions of messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, cast

import orjson

from pipecored.errors import PipecoreError, StoreError
from pipecored.events.kinds import (
    MESSAGE_RECEIVED,
    RECIPIENT_SUPPRESSED,
    RECIPIENT_UNSUPPRESSED,
    STATUS_EVENTS,
)
from pipecored.provider import InboundMessage, StatusEvent
from pipecored.ratelimit import gcra_reserve
from pipecored.store import sqlite_outbox as outbox
from pipecored.store.base import (
    EVERY_MESSAGE,
    AcceptResult,
    ActivityBucket,
    AppliedStatus,
    ArmResult,
    AttemptOutcome,
    AttemptRecord,
    Completed,
    DeliveryResult,
    EndpointHealth,
    EventDelivery,
    EventRecord,
    EventSource,
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
from pipecored.store.inbound import inbound_payload, opt_out_reason
from pipecored.store.sqlite_activity import activity_tx
from pipecored.store.sqlite_schema import DUE_AT, SCHEMA_VERSION, migrate
from pipecored.store.sqlite_suppressions import (
    list_suppressions_tx,
    suppress_tx,
    suppressed_among_tx,
    unsuppress_tx,
)

__all__ = ["MAX_BATCH", "SQLiteStore", "migrate_file", "sqlite_path"]

_T = TypeVar("_T")

MAX_BATCH: Final = 512
BUSY_TIMEOUT_MS: Final = 5000
# UPDATE ... RETURNING (claims) came in SQLite 3.35
MIN_SQLITE: Final = (3, 35, 0)
READ_THREADS: Final = 4
# A callback for a message we never recorded (or whose provider id never arrives) is dropped
# after this long, so pending_events cannot grow without bound.
PENDING_EVENT_TTL: Final = 24 * 3600.0
# Without a limit the WAL keeps the size of the largest burst it ever absorbed.
WAL_SIZE_LIMIT: Final = 64 * 1024 * 1024


def sqlite_path(url: str, *, base_dir: str) -> str:
    """The file named by a SQLAlchemy-style URL.

    ``sqlite:///data/p.db`` is relative to ``base_dir``; ``sqlite:////var/lib/p.db`` is
    absolute. An in-memory database would lose the queue at every restart, so it is refused.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(
            "a SQLite URL looks like sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = url[len(prefix) :]
    if "?" in path:
        raise ValueError("SQLite URL query parameters are not supported")
    if path in ("", ":memory:") or path.startswith("file:"):
        raise ValueError("an in-memory SQLite database cannot hold a durable queue; name a file")
    return os.path.normpath(os.path.join(base_dir, path))


def _json(value: object) -> str:
    # orjson writes text as the UTF-8 the client sent, not as \u escapes, like
    # json.dumps(ensure_ascii=False), several times faster
    return orjson.dumps(value, default=_json_default).decode("utf-8")


def _json_default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _store_error(op: str, exc: BaseException) -> PipecoreError:
    if isinstance(exc, PipecoreError):
        return exc
    if isinstance(exc, sqlite3.Error | OSError):
        # SQLite's messages name constraints and conditions, never the values involved; an
        # OSError names at most the database path
        error = StoreError(f"{op} failed: {exc}")
    else:
        error = StoreError(f"{op} failed: {type(exc).__name__}")
    error.__cause__ = exc
    return error


class StoreLocked(StoreError):
    """Another daemon owns this SQLite file: two would each think they own every lease."""


def _own(path: str) -> int | None:
    """Take the file's owner lock (``<path>.lock``, an exclusive flock held while the store is
    open), or raise StoreLocked. One daemon per file is what lets a restarted daemon take back
    every lease at once: no other process can be holding one. Returns the lock's descriptor."""
    if path == ":memory:":
        return None
    lock_path = path + ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreLocked(
            f"another pipecored daemon is using {path} (it holds {lock_path}); one daemon per"
            " SQLite file, or use PostgreSQL for several"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _create_private(path: str) -> None:
    """Create the database file readable by its owner only (it holds message bodies and phone
    numbers); an existing file keeps the mode its operator gave it. SQLite creates its -wal and
    -shm files with the main file's mode."""
    if path == ":memory:":
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


def _take_back_leases(conn: sqlite3.Connection, now: float) -> int:
    """Put back in the queue what this file's previous owner had claimed: with the owner lock
    held, no other process can be sending it, so there is no reason to wait for its lease. Those
    calls may have reached the provider before the process died: at least once, as promised."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        taken = conn.execute(
            "UPDATE messages SET status = 'queued', lease_until = NULL, lease_token = NULL,"
            " updated_at = ? WHERE status = 'sending'",
            (now,),
        ).rowcount
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return taken


def _connect(path: str, *, read_only: bool) -> sqlite3.Connection:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StoreError(
            f"SQLite {sqlite3.sqlite_version} is too old: pipecored needs"
            f" {'.'.join(map(str, MIN_SQLITE))} or newer (RETURNING)"
        )
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE, SAVEPOINT, COMMIT
        check_same_thread=False,  # readers are closed by close(), from another thread
    )
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if read_only:
            conn.execute("PRAGMA query_only = ON")
        else:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL journal mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read transaction, so the queries of one call see the same commit."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


# ---------------------------------------------------------------------------------------------
# rows


# The columns that are MessageRecord fields of the same name, as they are.
_PLAIN_COLUMNS: Final = (
    "id", "seq", "tenant_id", "channel", "direction", "provider", "sender", "status",
    "attempt_count", "provider_message_id", "error_code", "error_message", "created_at",
    "updated_at", "sent_at", "not_before", "route_index", "route_attempts", "lease_token",
    "body_preview", "experiment", "experiment_arm",
)  # fmt: skip


def _record(row: sqlite3.Row, attempts: tuple[AttemptRecord, ...] = ()) -> MessageRecord:
    return MessageRecord(
        **{column: row[column] for column in _PLAIN_COLUMNS},
        to=orjson.loads(row["to_json"]),
        payload=orjson.loads(row["payload_json"]),
        attempts=attempts,
    )


def _attempts(conn: sqlite3.Connection, seq: int) -> tuple[AttemptRecord, ...]:
    rows = conn.execute(
        "SELECT provider, started_at, outcome, http_status, error_code, error_message,"
        " duration_ms FROM attempts WHERE message_seq = ? ORDER BY started_at, id",
        (seq,),
    ).fetchall()
    return tuple(
        AttemptRecord(
            provider=r["provider"],
            started_at=r["started_at"],
            outcome=r["outcome"],
            http_status=r["http_status"],
            error_code=r["error_code"],
            error_message=r["error_message"],
            duration_ms=r["duration_ms"],
        )
        for r in rows
    )


def _get(conn: sqlite3.Connection, message_id: str) -> MessageRecord | None:
    row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
    return None if row is None else _record(row, _attempts(conn, row["seq"]))


# ---------------------------------------------------------------------------------------------
# write transactions: each runs on the writer thread, inside the batch's transaction


def _accept_tx(
    conn: sqlite3.Connection, message: NewMessage, claim: IdempotencyClaim | None
) -> AcceptResult | RecipientsSuppressed:
    """The accept, or the refusal to hand to its caller (returned, not raised: a raise would
    have the writer run its whole batch again with savepoints)."""
    refused = _suppressed_in(conn, [message])
    if refused:
        return refused[message.id]
    if claim is not None:
        row = conn.execute(
            "SELECT request_hash, message_id, expires_at FROM idempotency"
            " WHERE tenant_id = ? AND key = ?",
            (message.tenant_id, claim.key),
        ).fetchone()
        # the request's own accept time is "now", so a replayed request sees the clock it carries
        if row is not None and row["expires_at"] > message.created_at:
            if row["request_hash"] != claim.request_hash:
                raise IdempotencyConflict(row["message_id"])
            existing = _get(conn, row["message_id"])
            if existing is not None:
                return AcceptResult(existing, replayed=True)
    (record,) = _insert_messages(conn, [message])
    if claim is not None:
        conn.execute(
            "INSERT INTO idempotency (tenant_id, key, request_hash, message_id, expires_at)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, key) DO UPDATE SET request_hash = excluded.request_hash,"
            " message_id = excluded.message_id, expires_at = excluded.expires_at",
            (message.tenant_id, claim.key, claim.request_hash, message.id, claim.expires_at),
        )
    return AcceptResult(record, replayed=False)


_INSERT_MESSAGE_ROW = "(?, ?, ?, 'outbound', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _insert_messages(conn: sqlite3.Connection, messages: list[NewMessage]) -> list[MessageRecord]:
    """Insert new messages with one INSERT. With AUTOINCREMENT, SQLite gives the rows of one
    statement consecutive seqs in VALUES order, so the last row's id gives them all; with more
    than one row the first is read back to check it (on a mismatch the writer runs the batch's
    jobs one by one)."""
    params: list[object] = []
    for m in messages:
        lease = m.lease
        params += (m.id, m.tenant_id, m.channel, _json(m.to), m.sender, m.status,
                   m.created_at, m.created_at, m.not_before, _json(m.payload), m.experiment,
                   m.experiment_arm, lease and lease.until, lease and lease.token)  # fmt: skip
    last = conn.execute(
        "INSERT INTO messages (id, tenant_id, channel, direction, to_json, sender, status,"
        " created_at, updated_at, not_before, payload_json, experiment, experiment_arm,"
        " lease_until, lease_token) VALUES " + ",".join([_INSERT_MESSAGE_ROW] * len(messages)),
        params,
    ).lastrowid
    assert last is not None
    first = last - len(messages) + 1
    if len(messages) > 1:
        row = conn.execute("SELECT id FROM messages WHERE seq = ?", (first,)).fetchone()
        if row is None or row["id"] != messages[0].id:
            raise StoreError("a multi-row insert did not number its rows consecutively")
    return [m.record(first + i) for i, m in enumerate(messages)]


def _exclusion(exclude: list[tuple[str, str]]) -> tuple[str, dict[str, str]]:
    """The ``AND NOT (...)`` terms leaving these (tenant, channel) pairs out, and their
    parameters: only placeholders are formatted in, the values travel as parameters."""
    terms = "".join(
        f" AND NOT (tenant_id = :xt{i} AND channel = :xc{i})" for i in range(len(exclude))
    )
    params = {f"xt{i}": t for i, (t, _) in enumerate(exclude)}
    params.update({f"xc{i}": c for i, (_, c) in enumerate(exclude)})
    return terms, params


def _claim_tx(
    conn: sqlite3.Connection,
    now: float,
    limit: int,
    lease_seconds: float,
    exclude: list[tuple[str, str]],
) -> list[MessageRecord]:
    # The oldest due first, by walking the queue index (see DUE_AT): the query reads the rows it
    # takes and stops, whatever the backlog. INDEXED BY makes a plan that cannot use it an error
    # rather than a sort of the whole backlog. randomblob() gives each row its own token inside
    # the single UPDATE.
    excluded, params = _exclusion(exclude)
    due = (
        "SELECT seq FROM messages INDEXED BY messages_queue"
        f" WHERE status IN ('queued', 'sending', 'scheduled') AND {DUE_AT} <= :now"
    ) + excluded
    rows = conn.execute(
        "UPDATE messages SET status = 'sending', lease_until = :lease_until,"
        " lease_token = lower(hex(randomblob(16))), updated_at = :now"
        f" WHERE seq IN ({due} ORDER BY {DUE_AT} LIMIT :limit) RETURNING *",
        {"now": now, "lease_until": now + lease_seconds, "limit": limit, **params},
    ).fetchall()
    return sorted((_record(r) for r in rows), key=lambda r: r.seq)


def _move(
    conn: sqlite3.Connection,
    seq: int,
    current: str,
    new: str,
    error_code: str | None,
    error_message: str | None,
    now: float,
) -> str:
    """Apply a status event to one message, only forward; returns the status it ends with."""
    if not moves_forward(current, new):
        return current
    if new == "failed":
        conn.execute(
            "UPDATE messages SET status = 'failed', error_code = ?, error_message = ?,"
            " updated_at = ? WHERE seq = ?",
            (error_code, error_message, now, seq),
        )
    else:
        conn.execute(
            "UPDATE messages SET status = ?, updated_at = ? WHERE seq = ?", (new, now, seq)
        )
    return new


@dataclass(frozen=True, slots=True)
class _Complete:
    """A complete waiting in the writer's queue: the writer records a batch's together."""

    outcome: AttemptOutcome
    now: float
    events: EventSource | None


_ATTEMPT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?)"
_COMPLETED_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _complete_many(conn: sqlite3.Connection, jobs: Sequence[_Complete]) -> list[Completed | None]:
    """Record the attempts of several messages (each named once) with a fixed number of
    statements whatever their number: one read of the messages, one insert of the attempts, one
    update of the messages, one read of the callbacks held for them, and the events (each
    statement is a GIL hand-off between the writer and the busy event loop, so per-message
    statements cost more than the work they do). None for a message whose lease was taken over.
    """
    marks = ", ".join("?" * len(jobs))
    rows = {
        row["id"]: row
        for row in conn.execute(
            f"SELECT * FROM messages WHERE id IN ({marks})", [j.outcome.message_id for j in jobs]
        )
    }
    matched: list[tuple[_Complete, sqlite3.Row, Completion]] = []
    results: dict[str, Completed | None] = {}
    for job in jobs:
        row = rows.get(job.outcome.message_id)
        if row is None or row["lease_token"] != job.outcome.lease_token:
            results[job.outcome.message_id] = None
        else:
            matched.append((job, row, complete(row, job.outcome, job.now)))
    if not matched:
        return [None] * len(jobs)
    attempts = [
        (row["seq"], a.provider, a.started_at, a.outcome, a.http_status, a.error_code,
         a.error_message, a.duration_ms)
        for job, row, _ in matched
        if (a := job.outcome.attempt) is not None
    ]  # fmt: skip
    if attempts:
        conn.execute(
            "INSERT INTO attempts (message_seq, provider, started_at, outcome, http_status,"
            " error_code, error_message, duration_ms) VALUES "
            + ", ".join([_ATTEMPT_ROW] * len(attempts)),
            [value for attempt in attempts for value in attempt],
        )
    # v: the values of update_values, in its order (column1 = status ... column13 = seq)
    conn.execute(
        "UPDATE messages SET status = v.column1, provider = v.column2, route_index = v.column3,"
        " route_attempts = v.column4, error_code = v.column5, error_message = v.column6,"
        " not_before = v.column7, provider_message_id = v.column8, sent_at = v.column9,"
        " latency_ms = COALESCE(v.column10, latency_ms),"
        " attempt_count = attempt_count + v.column11, lease_until = NULL, lease_token = NULL,"
        " updated_at = v.column12"
        " FROM (VALUES " + ", ".join([_COMPLETED_ROW] * len(matched)) + ") AS v"
        " WHERE messages.seq = v.column13",
        [
            value
            for job, row, done in matched
            for value in update_values(done, job.outcome, job.now, row["seq"])
        ],
    )
    held = _held_callbacks(conn, [(row, done) for _, row, done in matched])
    for job, row, done in matched:
        deferred: tuple[str, ...] = ()
        callbacks = held.get(row["seq"])
        if callbacks:
            deferred = _apply_held(conn, row["seq"], done.status, callbacks, job.now)
        results[job.outcome.message_id] = Completed(deferred)
        if job.events is not None:
            emitted = completion_events(job.outcome, row["status"], done.status, deferred)
            if not emitted:
                continue
            if deferred:  # callbacks moved it on: read it as they left it
                _emit(conn, job.events, row["seq"], emitted, job.now)
            else:
                record = _completed_record(row, done, job.outcome, job.now)
                _emit_for(conn, job.events, record, emitted, job.now)
    return [results[job.outcome.message_id] for job in jobs]


def _completed_record(
    row: sqlite3.Row, done: Completion, outcome: AttemptOutcome, now: float
) -> MessageRecord:
    """The message as the complete's UPDATE left it, from the row read before it (the same
    values the UPDATE wrote), so that its events need not read it again."""
    values = {column: row[column] for column in _PLAIN_COLUMNS}
    values.update(
        status=done.status,
        provider=done.provider,
        route_index=outcome.route_index,
        route_attempts=outcome.route_attempts,
        error_code=done.error_code,
        error_message=done.error_message,
        not_before=outcome.not_before,
        provider_message_id=done.provider_message_id,
        sent_at=done.sent_at,
        attempt_count=row["attempt_count"] + (0 if outcome.attempt is None else 1),
        lease_token=None,
        updated_at=now,
    )
    return MessageRecord(
        **values, to=orjson.loads(row["to_json"]), payload=orjson.loads(row["payload_json"])
    )


def _held_callbacks(
    conn: sqlite3.Connection, completed: Sequence[tuple[sqlite3.Row, Completion]]
) -> dict[int, list[sqlite3.Row]]:
    """The status callbacks that came for these messages before their provider's id was
    written (oldest first), by message seq, taken out of ``pending_events``."""
    keys = {
        (row["tenant_id"], done.provider, done.provider_message_id): row["seq"]
        for row, done in completed
        if done.provider is not None and done.provider_message_id is not None
    }
    if not keys:
        return {}
    marks = ", ".join(["(?, ?, ?)"] * len(keys))
    params = [value for key in keys for value in key]
    found = conn.execute(
        "SELECT id, tenant_id, provider, provider_message_id, status, error_code, error_message"
        f" FROM pending_events WHERE (tenant_id, provider, provider_message_id) IN"
        f" (VALUES {marks}) ORDER BY id",
        params,
    ).fetchall()
    if not found:
        return {}
    held: dict[int, list[sqlite3.Row]] = {}
    for event in found:
        key = (event["tenant_id"], event["provider"], event["provider_message_id"])
        held.setdefault(keys[key], []).append(event)
    conn.execute(f"DELETE FROM pending_events WHERE id IN ({', '.join('?' * len(found))})",
                 [event["id"] for event in found])  # fmt: skip
    return held


def _apply_held(
    conn: sqlite3.Connection, seq: int, status: str, callbacks: Sequence[sqlite3.Row], now: float
) -> tuple[str, ...]:
    """Apply a message's held callbacks in order; the statuses they moved it to."""
    reached: list[str] = []
    for event in callbacks:
        moved = _move(
            conn, seq, status, event["status"], event["error_code"], event["error_message"], now
        )
        if moved != status:
            reached.append(moved)
        status = moved
    return tuple(reached)


def _emit(
    conn: sqlite3.Connection,
    events: EventSource,
    seq: int,
    emitted: Sequence[EmittedEvent],
    now: float,
) -> None:
    """Store the events of a change to one message, read as the change left it."""
    row = conn.execute("SELECT * FROM messages WHERE seq = ?", (seq,)).fetchone()
    _emit_for(conn, events, _record(row), emitted, now)


def _emit_for(
    conn: sqlite3.Connection,
    events: EventSource,
    record: MessageRecord,
    emitted: Sequence[EmittedEvent],
    now: float,
) -> None:
    for event in message_events(events, record, emitted, now):
        outbox.record_tx(conn, event)


def _release_tx(conn: sqlite3.Connection, message_id: str, lease_token: str, now: float) -> None:
    # a callback may have moved the message on while it was leased; then only the lease goes
    conn.execute(
        "UPDATE messages SET status = CASE status WHEN 'sending' THEN 'queued' ELSE status END,"
        " lease_until = NULL, lease_token = NULL, updated_at = ?"
        " WHERE id = ? AND lease_token = ?",
        (now, message_id, lease_token),
    )


def _apply_status_tx(
    conn: sqlite3.Connection,
    tenant_id: str,
    provider: str,
    event: StatusEvent,
    now: float,
    events: EventSource | None,
) -> AppliedStatus | None:
    row = None
    if event.message_id is not None:
        row = conn.execute(
            "SELECT seq, id, status, channel, experiment, experiment_arm FROM messages"
            " WHERE id = ? AND tenant_id = ? AND direction = 'outbound'",
            (event.message_id, tenant_id),
        ).fetchone()
    if row is None and event.provider_message_id is not None:
        row = conn.execute(
            "SELECT seq, id, status, channel, experiment, experiment_arm FROM messages"
            " WHERE tenant_id = ? AND provider = ?"
            " AND provider_message_id = ? AND direction = 'outbound' ORDER BY seq DESC LIMIT 1",
            (tenant_id, provider, event.provider_message_id),
        ).fetchone()
    if row is not None:
        status, error_code, error_message = event.status, event.error_code, event.error_message
        ended = _move(conn, row["seq"], row["status"], status, error_code, error_message, now)
        moved = ended != row["status"]
        if moved and events is not None and ended in STATUS_EVENTS:
            _emit(conn, events, row["seq"], [(STATUS_EVENTS[ended], None, None)], now)
        return AppliedStatus(
            str(row["id"]),
            moved=moved,
            experiment=row["experiment"],
            experiment_arm=row["experiment_arm"],
        )
    if event.provider_message_id is not None:
        conn.execute("DELETE FROM pending_events WHERE received_at < ?", (now - PENDING_EVENT_TTL,))
        conn.execute(
            "INSERT INTO pending_events (tenant_id, provider, provider_message_id, status,"
            " error_code, error_message, occurred_at, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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


def _add_inbound_tx(
    conn: sqlite3.Connection,
    tenant_id: str,
    channel: str,
    provider: str,
    message: InboundMessage,
    now: float,
    opt_out: str | None,
    events: EventSource | None,
) -> tuple[str, bool]:
    if message.provider_message_id is not None:
        row = conn.execute(
            "SELECT id FROM messages WHERE tenant_id = ? AND provider = ?"
            " AND provider_message_id = ? AND direction = 'inbound' LIMIT 1",
            (tenant_id, provider, message.provider_message_id),
        ).fetchone()
        if row is not None:
            return str(row["id"]), False
    payload = inbound_payload(message)
    message_id = new_message_id()
    conn.execute(
        "INSERT INTO messages (id, tenant_id, channel, direction, provider, to_json, sender,"
        " status, provider_message_id, created_at, updated_at, payload_json, body_preview)"
        " VALUES (?, ?, ?, 'inbound', ?, ?, ?, 'received', ?, ?, ?, ?, ?)",
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
    if events is not None:
        seq = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        _emit(conn, events, seq, [(MESSAGE_RECEIVED, None, None)], now)
    if opt_out == "stop":
        reason = opt_out_reason(message)
        _suppress(conn, events, tenant_id, channel, message.sender, reason, now)
    elif opt_out == "start":
        _unsuppress(conn, events, tenant_id, channel, message.sender, now)
    return message_id, True


def _suppress(
    conn: sqlite3.Connection,
    events: EventSource | None,
    tenant_id: str,
    channel: str,
    address: str,
    reason: str | None,
    now: float,
) -> bool:
    added = suppress_tx(conn, tenant_id, channel, address, reason, now)
    if added:
        data = {"channel": channel, "address": address, "reason": reason}
        outbox.tenant_event_tx(conn, events, tenant_id, RECIPIENT_SUPPRESSED, data, now)
    return added


def _unsuppress(
    conn: sqlite3.Connection,
    events: EventSource | None,
    tenant_id: str,
    channel: str,
    address: str,
    now: float,
) -> bool:
    removed = unsuppress_tx(conn, tenant_id, channel, address)
    if removed:
        data = {"channel": channel, "address": address}
        outbox.tenant_event_tx(conn, events, tenant_id, RECIPIENT_UNSUPPRESSED, data, now)
    return removed


def _requeue_tx(conn: sqlite3.Connection, message_id: str, now: float) -> MessageRecord | None:
    rows = conn.execute(
        "UPDATE messages SET status = 'queued', not_before = NULL, route_index = 0,"
        " route_attempts = 0, error_code = NULL, error_message = NULL, lease_until = NULL,"
        " lease_token = NULL, updated_at = ?"
        " WHERE id = ? AND direction = 'outbound' AND status = 'failed'"
        " RETURNING *",
        (now, message_id),
    ).fetchall()
    if not rows:
        return None
    return _record(rows[0], _attempts(conn, rows[0]["seq"]))


def _purge_idempotency_tx(conn: sqlite3.Connection, now: float) -> int:
    return conn.execute("DELETE FROM idempotency WHERE expires_at <= ?", (now,)).rowcount


# ---------------------------------------------------------------------------------------------
# reads


def _list_tx(
    conn: sqlite3.Connection, tenant_id: str, limit: int, where: LogFilter
) -> list[MessageRecord]:
    terms = ["tenant_id = ?"]
    params: list[object] = [tenant_id]
    for column, value in (
        ("seq <", where.before_seq),
        ("channel =", where.channel),
        ("status =", where.status),
        ("direction =", where.direction),
    ):
        if value is not None:
            terms.append(f"{column} ?")
            params.append(value)
    params.append(limit)
    # only fixed fragments are joined; each keeps its index (tenant+status+seq, ...) usable,
    # which a static "(? IS NULL OR status = ?)" would not
    sql = f"SELECT * FROM messages WHERE {' AND '.join(terms)} ORDER BY seq DESC LIMIT ?"
    rows = conn.execute(sql, params).fetchall()
    return [_record(r) for r in rows]


# Counts come from the trigger-kept message_counts table; only the part of an hour that a
# ?since cuts into is counted from the messages themselves.
_COUNTED_HOURS: Final = (
    "SELECT status, channel, provider, sum(n) AS n, sum(measured) AS measured"
    " FROM message_counts WHERE tenant_id = :tenant AND hour >= :hour"
    " GROUP BY status, channel, provider HAVING sum(n) > 0"
)
_COUNTED_ROWS: Final = (
    "SELECT status, channel, COALESCE(provider, '') AS provider, count(*) AS n,"
    " count(latency_ms) AS measured FROM messages"
    " WHERE tenant_id = :tenant AND created_at >= :since"
    # the bound keeps the index range short; the hour test is the exact complement of the
    # hours counted above, whatever float rounding does at the boundary
    " AND created_at < (:hour + 1) * 3600 AND CAST(created_at / 3600 AS INTEGER) < :hour"
    " AND direction = 'outbound' GROUP BY status, channel, provider"
)
_LATENCY_WHERE: Final = (
    " FROM messages WHERE tenant_id = :tenant AND latency_ms IS NOT NULL"
    " AND (:since IS NULL OR created_at >= :since)"
)
_LATENCY_ASC: Final = (
    "SELECT latency_ms" + _LATENCY_WHERE + " ORDER BY latency_ms ASC LIMIT 1 OFFSET :offset"
)
_LATENCY_DESC: Final = (
    "SELECT latency_ms" + _LATENCY_WHERE + " ORDER BY latency_ms DESC LIMIT 1 OFFSET :offset"
)
_HOUR: Final = 3600


def _stats_tx(conn: sqlite3.Connection, tenant_id: str, since: float | None) -> StoreStats:
    by_status: dict[str, int] = {}
    by_channel: dict[str, int] = {}
    by_provider: dict[str, int] = {}
    measured = 0
    with _snapshot(conn):
        first_whole_hour = -(2**62) if since is None else math.ceil(since / _HOUR)
        groups = conn.execute(
            _COUNTED_HOURS, {"tenant": tenant_id, "hour": first_whole_hour}
        ).fetchall()
        if since is not None and since < first_whole_hour * _HOUR:
            groups += conn.execute(
                _COUNTED_ROWS, {"tenant": tenant_id, "since": since, "hour": first_whole_hour}
            ).fetchall()
        for g in groups:
            n: int = g["n"]
            measured += g["measured"]
            by_status[g["status"]] = by_status.get(g["status"], 0) + n
            by_channel[g["channel"]] = by_channel.get(g["channel"], 0) + n
            if g["provider"]:
                by_provider[g["provider"]] = by_provider.get(g["provider"], 0) + n

        params = {"tenant": tenant_id, "since": since}

        def percentile(p: float) -> float | None:
            if measured == 0:
                return None
            rank = min(measured - 1, max(0, math.ceil(p * measured) - 1))  # nearest rank
            # walk the index from whichever end is nearer: p99 of a million steps 10,000 entries
            if rank <= measured // 2:
                sql, offset = _LATENCY_ASC, rank
            else:
                sql, offset = _LATENCY_DESC, measured - 1 - rank
            value: float = conn.execute(sql, {**params, "offset": offset}).fetchone()[0]
            return value

        latency = {"p50": percentile(0.50), "p95": percentile(0.95), "p99": percentile(0.99)}

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


def _queue_depth_tx(conn: sqlite3.Connection, now: float) -> tuple[int, float]:
    count, oldest = conn.execute(
        # the index's own status list, so that the planner can use the partial queue index
        "SELECT count(*), min(created_at) FROM messages"
        " WHERE status IN ('queued', 'sending', 'scheduled') AND status <> 'scheduled'"
    ).fetchone()
    return int(count), 0.0 if oldest is None else max(0.0, now - oldest)


def _next_due_tx(conn: sqlite3.Connection, exclude: list[tuple[str, str]]) -> float | None:
    # the first entry of the queue index (min() would read every entry of it)
    excluded, params = _exclusion(exclude)
    row = conn.execute(
        f"SELECT {DUE_AT} FROM messages INDEXED BY messages_queue"
        " WHERE status IN ('queued', 'sending', 'scheduled')"
        + excluded
        + f" ORDER BY {DUE_AT} LIMIT 1",
        params,
    ).fetchone()
    return None if row is None else cast(float, row[0])


def _cancel_tx(
    conn: sqlite3.Connection, message_id: str, now: float, events: EventSource | None
) -> MessageRecord | None:
    row = conn.execute(
        "UPDATE messages SET status = 'canceled', not_before = NULL, updated_at = ?"
        " WHERE id = ? AND direction = 'outbound' AND status IN ('scheduled', 'queued')"
        " RETURNING *",
        (now, message_id),
    ).fetchone()
    if row is None:
        return None
    record = _record(row, _attempts(conn, row["seq"]))
    if events is not None:
        event = events.message_event(STATUS_EVENTS["canceled"], record, now=now)
        outbox.record_tx(conn, event)
    return record


def _ping_tx(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()


def _write_probe_tx(conn: sqlite3.Connection) -> None:
    """A write that needs the disk (its pages go to the WAL at commit) and leaves nothing."""
    conn.execute(
        "INSERT INTO idempotency (tenant_id, key, request_hash, message_id, expires_at)"
        " VALUES ('', 'pipecored-write-probe', '', '', 0)"
    )
    conn.execute("DELETE FROM idempotency WHERE tenant_id = '' AND key = 'pipecored-write-probe'")


# ---------------------------------------------------------------------------------------------
# the store


@dataclass(slots=True)
class _WriteJob:
    op: str
    run: Callable[[sqlite3.Connection], object]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    # A plain accept (no idempotency key): the writer inserts all of a batch's in one statement.
    accept: NewMessage | None = None
    # A complete: the writer records all of a batch's together (_complete_many).
    complete: _Complete | None = None


def _together(conn: sqlite3.Connection, batch: list[_WriteJob]) -> dict[int, object]:
    """Run a batch's plain accepts as one insert (after one suppression lookup for them all)
    and its completes as one :func:`_complete_many`, before its other jobs; their results by
    ``id(job)`` (a refused accept's is its :class:`RecipientsSuppressed`). Jobs of one
    batch were all waiting at once, so no order among them was promised to anyone. Completes
    naming a message twice run one by one, in order."""
    done: dict[int, object] = {}
    accepts = [(job, job.accept) for job in batch if job.accept is not None]
    if len(accepts) > 1:
        refused = _suppressed_in(conn, [message for _, message in accepts])
        kept = [(job, message) for job, message in accepts if message.id not in refused]
        records = _insert_messages(conn, [message for _, message in kept]) if kept else []
        for (job, _), record in zip(kept, records, strict=True):
            done[id(job)] = AcceptResult(record, replayed=False)
        done.update((id(job), refused[m.id]) for job, m in accepts if m.id in refused)
    completes = [(job, job.complete) for job in batch if job.complete is not None]
    named = {c.outcome.message_id for _, c in completes}
    if len(completes) > 1 and len(named) == len(completes):
        completed = _complete_many(conn, [c for _, c in completes])
        for (job, _), result in zip(completes, completed, strict=True):
            done[id(job)] = result
    return done


_KEYS_PER_LOOKUP: Final = 500  # well under SQLite's limit on a statement's parameters


def _suppressed_in(
    conn: sqlite3.Connection, messages: list[NewMessage]
) -> dict[str, RecipientsSuppressed]:
    """The refusals among ``messages`` whose recipients are suppressed, by message id: one
    lookup for each (tenant, channel) of them, mostly one."""
    wanted: dict[tuple[str, str], dict[str, None]] = {}
    for message in messages:
        wanted.setdefault((message.tenant_id, message.channel), {}).update(
            dict.fromkeys(message.suppression_keys)
        )
    found: set[tuple[str, str, str]] = set()
    for (tenant_id, channel), distinct in wanted.items():
        keys = list(distinct)
        for start in range(0, len(keys), _KEYS_PER_LOOKUP):
            chunk = keys[start : start + _KEYS_PER_LOOKUP]
            suppressed = suppressed_among_tx(conn, tenant_id, channel, chunk)
            found.update((tenant_id, channel, key) for key in suppressed)
    return refused_accepts(messages, found) if found else {}


class _JobFailed(Exception):
    """A job of a batch run without savepoints failed: the batch is run again with them."""


class _BatchAborted(Exception):
    """SQLite rolled back the whole transaction under a job (I/O error, disk full)."""


_STOP: Final = object()


def _settle(future: asyncio.Future[Any], ok: bool, value: object) -> None:
    if future.done():  # the caller was cancelled; the write happened anyway
        return
    if ok:
        future.set_result(value)
    else:
        assert isinstance(value, BaseException)
        future.set_exception(value)


def _settle_all(results: list[tuple[asyncio.Future[Any], bool, object]]) -> None:
    for future, ok, value in results:
        _settle(future, ok, value)


class SQLiteStore(MessageStore):
    """:class:`MessageStore` on one SQLite file, with group commit (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._state = "new"  # new -> open -> closed
        self._state_lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_WriteJob | object] = queue.SimpleQueue()
        self._writer_done: ThreadFuture[None] = ThreadFuture()
        self._commits = 0
        self._readers: ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._owner_lock: int | None = None
        # the last write transaction failed (a full disk): ping() then proves a write works
        self._write_failing = False
        # messages a previous process of this daemon had claimed, put back at open
        self.taken_back = 0
        # One daemon owns the file (the owner lock), so what the daemons sharing a store would
        # coordinate through it is kept here, in memory: rate limits' arrival times, claims.
        self._rate_tats: dict[str, float] = {}
        self._claims: dict[str, float] = {}

    @property
    def commits(self) -> int:
        """Write transactions committed so far (each one fsync), however many jobs each held."""
        return self._commits

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        with self._state_lock:
            if self._state != "new":
                raise StoreError(f"open failed: store is {self._state}")
            self._state = "opening"
        started: ThreadFuture[None] = ThreadFuture()
        self._writer_done = ThreadFuture()
        writer = threading.Thread(
            target=self._writer_main,
            args=(started,),
            name="pipecored-store-writer",
            # a daemon that forgets close() must still be able to exit; SQLite keeps the file
            # consistent whatever point the thread is stopped at
            daemon=True,
        )
        writer.start()
        try:
            await asyncio.wrap_future(started)
        except BaseException as exc:
            with self._state_lock:
                self._state = "new"
            raise _store_error("open", exc) from exc
        self._readers = ThreadPoolExecutor(
            max_workers=READ_THREADS, thread_name_prefix="pipecored-store-read"
        )
        with self._state_lock:
            if self._state == "closed":  # close() ran while we were opening
                self._jobs.put(_STOP)
                raise StoreError("open failed: store was closed while opening")
            self._state = "open"

    async def close(self) -> None:
        with self._state_lock:
            was_open = self._state == "open"
            self._state = "closed"
            if was_open:
                # nothing can be queued after the stop marker: submission holds this lock
                self._jobs.put(_STOP)
        if not was_open:
            return
        await asyncio.wrap_future(self._writer_done)
        readers = self._readers
        if readers is not None:
            await asyncio.get_running_loop().run_in_executor(None, readers.shutdown)
        for conn in self._reader_conns:
            conn.close()
        self._reader_conns.clear()

    # -- the writer thread --------------------------------------------------------------------

    def _writer_main(self, started: ThreadFuture[None]) -> None:
        try:
            try:
                directory = os.path.dirname(self.path)
                if directory:
                    os.makedirs(directory, exist_ok=True)
                self._owner_lock = _own(self.path)
                _create_private(self.path)
                conn = _connect(self.path, read_only=False)
            except BaseException as exc:
                self._release_owner_lock()
                started.set_exception(exc)
                return
            try:
                migrate(conn)
                self.taken_back = _take_back_leases(conn, time.time())
            except BaseException as exc:
                conn.close()
                self._release_owner_lock()
                started.set_exception(exc)
                return
            started.set_result(None)
            try:
                self._writer_loop(conn)
            finally:
                conn.close()
                self._release_owner_lock()
        finally:
            self._writer_done.set_result(None)

    def _release_owner_lock(self) -> None:
        if self._owner_lock is not None:
            os.close(self._owner_lock)  # closing the descriptor releases the flock
            self._owner_lock = None

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        while True:
            item = self._jobs.get()
            batch: list[_WriteJob] = []
            stop = False
            while True:
                if item is _STOP:
                    stop = True
                    break
                assert isinstance(item, _WriteJob)
                batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._run_batch(conn, batch)
            if stop:
                return

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_WriteJob]) -> None:
        try:
            try:
                results = self._transaction(conn, batch, savepoints=False)
            except _JobFailed:
                # Undo the batch and run it again with each job in a savepoint, so that only
                # the failing job fails. Jobs only touch the database, and the first run left
                # nothing behind, so running them again is safe.
                conn.execute("ROLLBACK")
                results = self._transaction(conn, batch, savepoints=True)
        except Exception as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            reason = exc.__cause__ if isinstance(exc, _BatchAborted) else exc
            failed: list[tuple[bool, object]] = []
            for job in batch:
                error = StoreError(f"{job.op} failed: the write was not committed: {reason}")
                error.__cause__ = reason
                failed.append((False, error))
            self._write_failing = True
            self._resolve(batch, failed)
            return
        self._commits += 1
        self._write_failing = False
        self._resolve(batch, results)

    @staticmethod
    def _transaction(
        conn: sqlite3.Connection, batch: list[_WriteJob], *, savepoints: bool
    ) -> list[tuple[bool, object]]:
        """Run the batch's jobs in one transaction and commit it. Without savepoints (the
        usual case: every statement is a GIL hand-off between this thread and the event loop,
        and a savepoint costs two), a failing job raises :class:`_JobFailed`; the batch's plain
        accepts are then also inserted with a single statement."""
        results: list[tuple[bool, object]] = []
        conn.execute("BEGIN IMMEDIATE")
        # the results of the jobs done together, by id(job)
        together: dict[int, object] = {}
        if not savepoints:
            try:
                together = _together(conn, batch)
            except Exception as exc:
                raise _JobFailed from exc
        for job in batch:
            if id(job) in together:
                results.append((True, together[id(job)]))
                continue
            if savepoints:
                conn.execute("SAVEPOINT job")
            try:
                value = job.run(conn)
            except Exception as exc:
                if not conn.in_transaction:
                    raise _BatchAborted(str(exc)) from exc
                if not savepoints:
                    raise _JobFailed from exc
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                results.append((False, _store_error(job.op, exc)))
            else:
                if savepoints:
                    conn.execute("RELEASE job")
                results.append((True, value))
        conn.execute("COMMIT")
        return results

    @staticmethod
    def _resolve(batch: list[_WriteJob], results: list[tuple[bool, object]]) -> None:
        """Hand each job its result on its caller's loop: one wake-up per loop and batch, not
        one per job (each call_soon_threadsafe writes to the loop's self-pipe)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, object]]]
        by_loop = {}
        for job, (ok, value) in zip(batch, results, strict=True):
            by_loop.setdefault(job.loop, []).append((job.future, ok, value))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody waits
                loop.call_soon_threadsafe(_settle_all, settled)

    async def _write(
        self,
        op: str,
        run: Callable[[sqlite3.Connection], _T],
        accept: NewMessage | None = None,
        complete: _Complete | None = None,
    ) -> _T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        with self._state_lock:
            if self._state != "open":
                raise StoreError(f"{op} failed: store is not open")
            self._jobs.put(_WriteJob(op, run, loop, future, accept, complete))
        return await future

    # -- readers ------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = _connect(self.path, read_only=True)
            self._reader_local.conn = conn
            with self._state_lock:
                self._reader_conns.append(conn)
        return conn

    def _run_read(self, op: str, run: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return run(self._reader())
        except Exception as exc:
            raise _store_error(op, exc) from exc

    async def _read(self, op: str, run: Callable[[sqlite3.Connection], _T]) -> _T:
        readers = self._readers
        if self._state != "open" or readers is None:
            raise StoreError(f"{op} failed: store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(readers, self._run_read, op, run)
        except RuntimeError as exc:  # the pool was shut down between the check and the submit
            raise StoreError(f"{op} failed: store is not open") from exc

    async def ping(self) -> None:
        if self._writer_done.done() and self._state == "open":
            raise StoreError("ping failed: the writer thread has stopped")
        await self._read("ping", _ping_tx)
        if self._write_failing:
            await self._write("ping", _write_probe_tx)

    async def accept(
        self, message: NewMessage, idempotency: IdempotencyClaim | None = None
    ) -> AcceptResult:
        # a plain accept may be inserted with the others of its batch (_together)
        plain = message if idempotency is None else None
        result = await self._write(
            "accept", lambda conn: _accept_tx(conn, message, idempotency), plain
        )
        if isinstance(result, RecipientsSuppressed):
            raise result
        return result

    async def get(self, message_id: str) -> MessageRecord | None:
        def run(conn: sqlite3.Connection) -> MessageRecord | None:
            with _snapshot(conn):
                return _get(conn, message_id)

        return await self._read("get", run)

    async def claim(
        self,
        *,
        now: float,
        limit: int,
        lease_seconds: float,
        exclude: Collection[tuple[str, str]] = (),
    ) -> list[MessageRecord]:
        excluded = sorted(set(exclude))
        return await self._write(
            "claim", lambda conn: _claim_tx(conn, now, limit, lease_seconds, excluded)
        )

    async def complete(self, outcome: AttemptOutcome) -> Completed | None:
        job = _Complete(outcome, time.time(), self.events)
        return await self._write(
            "complete", lambda conn: _complete_many(conn, [job])[0], complete=job
        )

    async def cancel(self, message_id: str, *, now: float) -> MessageRecord | None:
        events = self.events
        return await self._write("cancel", lambda conn: _cancel_tx(conn, message_id, now, events))

    async def release(self, message_id: str, lease_token: str) -> None:
        now = time.time()
        await self._write("release", lambda conn: _release_tx(conn, message_id, lease_token, now))

    async def next_due(self, exclude: Collection[tuple[str, str]] = ()) -> float | None:
        excluded = sorted(set(exclude))
        return await self._read("next_due", lambda conn: _next_due_tx(conn, excluded))

    async def apply_status(
        self, tenant_id: str, provider: str, event: StatusEvent
    ) -> AppliedStatus | None:
        now = time.time()
        events = self.events
        return await self._write(
            "apply_status",
            lambda conn: _apply_status_tx(conn, tenant_id, provider, event, now, events),
        )

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
        events = self.events
        return await self._write(
            "add_inbound",
            lambda conn: _add_inbound_tx(
                conn, tenant_id, channel, provider, message, now, opt_out, events
            ),
        )

    async def requeue(self, message_id: str, *, now: float) -> MessageRecord | None:
        return await self._write("requeue", lambda conn: _requeue_tx(conn, message_id, now))

    async def list_messages(
        self, tenant_id: str, *, limit: int, where: LogFilter = EVERY_MESSAGE
    ) -> list[MessageRecord]:
        return await self._read(
            "list_messages", lambda conn: _list_tx(conn, tenant_id, limit, where)
        )

    async def stats(self, tenant_id: str, *, since: float | None = None) -> StoreStats:
        return await self._read("stats", lambda conn: _stats_tx(conn, tenant_id, since))

    async def suppress(
        self, tenant_id: str, channel: str, address: str, *, reason: str | None, now: float
    ) -> bool:
        events = self.events
        return await self._write(
            "suppress",
            lambda conn: _suppress(conn, events, tenant_id, channel, address, reason, now),
        )

    async def unsuppress(self, tenant_id: str, channel: str, address: str) -> bool:
        now = time.time()
        events = self.events
        return await self._write(
            "unsuppress",
            lambda conn: _unsuppress(conn, events, tenant_id, channel, address, now),
        )

    async def list_suppressions(
        self, tenant_id: str, *, channel: str | None, after_seq: int | None, limit: int
    ) -> list[SuppressionRecord]:
        return await self._read(
            "list_suppressions",
            lambda conn: list_suppressions_tx(conn, tenant_id, channel, after_seq, limit),
        )

    async def queue_depth(self, *, now: float) -> tuple[int, float]:
        return await self._read("queue_depth", lambda conn: _queue_depth_tx(conn, now))

    async def purge_idempotency(self, *, now: float) -> int:
        return await self._write("purge_idempotency", lambda conn: _purge_idempotency_tx(conn, now))

    # -- the events outbox ----------------------------------------------------------------------

    async def add_event(self, event: NewEvent) -> None:
        await self._write("add_event", lambda conn: outbox.record_tx(conn, event))

    async def claim_event_deliveries(
        self,
        *,
        now: float,
        limit: int,
        lease_seconds: float,
        per_endpoint: int,
        exclude_endpoints: Collection[str] = (),
    ) -> list[EventDelivery]:
        excluded = sorted(set(exclude_endpoints))
        return await self._write(
            "claim_event_deliveries",
            lambda conn: outbox.claim_tx(conn, now, limit, lease_seconds, per_endpoint, excluded),
        )

    async def finish_event_delivery(self, result: DeliveryResult) -> None:
        await self._write("finish_event_delivery", lambda conn: outbox.finish_tx(conn, result))

    async def next_event_due(self, exclude_endpoints: Collection[str] = ()) -> float | None:
        excluded = sorted(set(exclude_endpoints))
        return await self._read("next_event_due", lambda conn: outbox.next_due_tx(conn, excluded))

    async def list_events(
        self, tenant_id: str, *, after_seq: int | None, limit: int
    ) -> list[EventRecord]:
        def run(conn: sqlite3.Connection) -> list[EventRecord]:
            with _snapshot(conn):
                return outbox.list_tx(conn, tenant_id, after_seq, limit)

        return await self._read("list_events", run)

    async def outbox_depth(self, *, now: float) -> tuple[int, float]:
        return await self._read("outbox_depth", lambda conn: outbox.depth_tx(conn, now))

    async def endpoint_health(
        self, tenant_id: str, endpoints: Sequence[str]
    ) -> list[EndpointHealth]:
        wanted = list(endpoints)

        def run(conn: sqlite3.Connection) -> list[EndpointHealth]:
            with _snapshot(conn):
                return outbox.endpoint_health_tx(conn, tenant_id, wanted)

        return await self._read("endpoint_health", run)

    async def experiment_results(self, tenant_id: str) -> list[ArmResult]:
        return await self._read(
            "experiment_results", lambda conn: _experiment_results_tx(conn, tenant_id)
        )

    # -- coordination (one daemon per file: in memory) ----------------------------------------

    async def reserve_rate(self, key: str, *, per_second: float, burst: int, now: float) -> float:
        tat, wait = gcra_reserve(self._rate_tats.get(key), now, per_second=per_second, burst=burst)
        self._rate_tats[key] = tat
        return wait

    async def claim_once(self, key: str, *, until: float, now: float) -> bool:
        held = self._claims.get(key)
        if held is not None and held > now:
            return False
        if len(self._claims) > 10_000:
            self._claims = {k: t for k, t in self._claims.items() if t > now}
        self._claims[key] = until
        return True

    # -- the console's charts -------------------------------------------------------------------

    async def activity(
        self, tenant_id: str, *, since: float, until: float, bucket_seconds: int
    ) -> list[ActivityBucket]:
        # a bad window is the caller's error (ValueError), not the store's
        activity_starts(since=since, until=until, bucket_seconds=bucket_seconds)

        def run(conn: sqlite3.Connection) -> list[ActivityBucket]:
            with _snapshot(conn):
                return activity_tx(conn, tenant_id, since, until, bucket_seconds)

        return await self._read("activity", run)


async def migrate_file(path: str) -> tuple[int, int]:
    """``pipecored migrate`` on SQLite: open the store (which migrates it under its owner lock)
    and close it; (version before, version after)."""
    before = await asyncio.to_thread(_file_version, path)
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    return before, SCHEMA_VERSION


def _file_version(path: str) -> int:
    if not os.path.exists(path):
        return 0
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _experiment_results_tx(conn: sqlite3.Connection, tenant_id: str) -> list[ArmResult]:
    with _snapshot(conn):
        groups = conn.execute(
            "SELECT channel, experiment, experiment_arm, status, count(*) AS n FROM messages"
            " WHERE tenant_id = ? AND experiment IS NOT NULL"
            " GROUP BY experiment, experiment_arm, channel, status",
            (tenant_id,),
        ).fetchall()
        arms: dict[tuple[str, str, str], dict[str, int]] = {}
        for g in groups:
            key = (g["channel"], g["experiment"], g["experiment_arm"])
            arms.setdefault(key, {})[g["status"]] = g["n"]
        results = []
        for (channel, experiment, arm), by_status in sorted(arms.items()):
            measured = conn.execute(
                "SELECT count(*) FROM messages WHERE tenant_id = ? AND experiment = ?"
                " AND experiment_arm = ? AND latency_ms IS NOT NULL",
                (tenant_id, experiment, arm),
            ).fetchone()[0]

            latency: dict[float, float | None] = {}
            for p in (0.50, 0.95):
                latency[p] = None
                if measured:
                    rank = min(measured - 1, max(0, math.ceil(p * measured) - 1))
                    latency[p] = conn.execute(
                        "SELECT latency_ms FROM messages WHERE tenant_id = ? AND experiment = ?"
                        " AND experiment_arm = ? AND latency_ms IS NOT NULL"
                        " ORDER BY latency_ms LIMIT 1 OFFSET ?",
                        (tenant_id, experiment, arm, rank),
                    ).fetchone()[0]

            results.append(
                ArmResult(
                    channel=channel,
                    experiment=experiment,
                    arm=arm,
                    messages=sum(by_status.values()),
                    sent=by_status.get("sent", 0),
                    delivered=by_status.get("delivered", 0) + by_status.get("read", 0),
                    failed=by_status.get("failed", 0),
                    latency_p50_ms=latency[0.50],
                    latency_p95_ms=latency[0.95],
                )
            )
        return results
