"""The SQLite transactions behind the events outbox (SPEC section 8).

An event is written by the transaction of the change that causes it (``record_tx``, called from
the write transactions in ``sqlite.py``), with one pending delivery per endpoint subscribed to
it. The outbox worker claims due deliveries (a claim moves ``next_attempt_at`` one lease ahead,
so a worker that dies mid-post leaves the delivery due again), posts them, and records how each
attempt ended.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from pipecored.store.base import (
    DeliveryResult,
    EndpointDelivery,
    EndpointHealth,
    EventDelivery,
    EventRecord,
    EventSource,
    MessageRecord,
    NewEvent,
)


def record_tx(conn: sqlite3.Connection, event: NewEvent | None) -> None:
    if event is None:
        return
    conn.execute(
        "INSERT INTO outbox_events (id, tenant_id, type, body, created_at) VALUES (?, ?, ?, ?, ?)",
        (event.id, event.tenant_id, event.type, event.body, event.created_at),
    )
    if event.endpoints:
        conn.executemany(
            "INSERT INTO outbox_deliveries (event_id, tenant_id, endpoint, state, attempts,"
            " next_attempt_at, updated_at) VALUES (?, ?, ?, 'pending', 0, ?, ?)",
            [
                (event.id, event.tenant_id, endpoint, event.created_at, event.created_at)
                for endpoint in dict.fromkeys(event.endpoints)
            ],
        )


def message_events_tx(
    conn: sqlite3.Connection,
    events: EventSource | None,
    record: MessageRecord,
    types: Sequence[tuple[str, Mapping[str, Any] | None]],
    now: float,
) -> None:
    """Store one event per ``(type, extra)``, each built from ``record`` as the change left it."""
    if events is None:
        return
    for event_type, extra in types:
        record_tx(conn, events.message_event(event_type, record, now=now, extra=extra))


def tenant_event_tx(
    conn: sqlite3.Connection,
    events: EventSource | None,
    tenant_id: str,
    event_type: str,
    data: Mapping[str, Any],
    now: float,
) -> None:
    if events is not None:
        record_tx(conn, events.tenant_event(tenant_id, event_type, data, now=now))


def _excluding(endpoints: Sequence[str]) -> tuple[str, list[object]]:
    if not endpoints:
        return "", []
    return f" AND d.endpoint NOT IN ({', '.join('?' * len(endpoints))})", list(endpoints)


def claim_tx(
    conn: sqlite3.Connection,
    now: float,
    limit: int,
    lease_seconds: float,
    per_endpoint: int,
    exclude: Sequence[str],
) -> list[EventDelivery]:
    # The window walks only what is due now (the partial index of pending deliveries), so an
    # endpoint with a backlog gives up to per_endpoint and the others get the rest of limit.
    excluded, params = _excluding(exclude)
    rows = conn.execute(
        "SELECT d.event_id, d.tenant_id, d.endpoint, d.attempts, e.type, e.body, e.created_at"
        " FROM (SELECT event_id, tenant_id, endpoint, attempts, next_attempt_at,"
        "  row_number() OVER (PARTITION BY endpoint ORDER BY next_attempt_at) AS rank"
        "  FROM outbox_deliveries d WHERE d.state = 'pending' AND d.next_attempt_at <= ?"
        f"  {excluded}) d"
        " JOIN outbox_events e ON e.id = d.event_id"
        " WHERE d.rank <= ? ORDER BY d.next_attempt_at LIMIT ?",
        [now, *params, per_endpoint, limit],
    ).fetchall()
    if rows:
        conn.executemany(
            "UPDATE outbox_deliveries SET next_attempt_at = ?"
            " WHERE event_id = ? AND endpoint = ? AND state = 'pending'",
            [(now + lease_seconds, row["event_id"], row["endpoint"]) for row in rows],
        )
    return [
        EventDelivery(
            event_id=row["event_id"],
            tenant_id=row["tenant_id"],
            endpoint=row["endpoint"],
            type=row["type"],
            body=bytes(row["body"]),
            attempts=row["attempts"],
            created_at=row["created_at"],
        )
        for row in rows
    ]


def finish_tx(conn: sqlite3.Connection, result: DeliveryResult) -> None:
    if result.delivered:
        state, next_at = "delivered", None
    elif result.retry_at is not None:
        state, next_at = "pending", result.retry_at
    else:
        state, next_at = "failed", None
    conn.execute(
        "UPDATE outbox_deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?,"
        " last_status_code = ?, last_error = ?, updated_at = ?"
        " WHERE event_id = ? AND endpoint = ? AND state = 'pending'",
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


def next_due_tx(conn: sqlite3.Connection, exclude: Sequence[str]) -> float | None:
    excluded, params = _excluding(exclude)
    value = conn.execute(
        f"SELECT min(d.next_attempt_at) FROM outbox_deliveries d WHERE d.state = 'pending'"
        f"{excluded}",
        params,
    ).fetchone()[0]
    return None if value is None else float(value)


def list_tx(
    conn: sqlite3.Connection, tenant_id: str, after_seq: int | None, limit: int
) -> list[EventRecord]:
    rows = conn.execute(
        "SELECT seq, id, tenant_id, type, body, created_at FROM outbox_events"
        " WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        (tenant_id, after_seq or 0, limit),
    ).fetchall()
    if not rows:
        return []
    marks = ", ".join("?" * len(rows))
    deliveries: dict[str, list[EndpointDelivery]] = {}
    for d in conn.execute(
        "SELECT event_id, endpoint, state, attempts, next_attempt_at, last_status_code,"
        f" last_error, updated_at FROM outbox_deliveries WHERE event_id IN ({marks})"
        " ORDER BY endpoint",
        [row["id"] for row in rows],
    ):
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
            seq=row["seq"],
            id=row["id"],
            tenant_id=row["tenant_id"],
            type=row["type"],
            body=bytes(row["body"]),
            created_at=row["created_at"],
            deliveries=tuple(deliveries.get(row["id"], ())),
        )
        for row in rows
    ]


def depth_tx(conn: sqlite3.Connection, now: float) -> tuple[int, float]:
    row = conn.execute(
        "SELECT count(*), min(e.created_at) FROM outbox_deliveries d"
        " JOIN outbox_events e ON e.id = d.event_id WHERE d.state = 'pending'"
    ).fetchone()
    oldest = row[1]
    return int(row[0]), 0.0 if oldest is None else max(0.0, now - float(oldest))


def endpoint_health_tx(
    conn: sqlite3.Connection, tenant_id: str, endpoints: Sequence[str]
) -> list[EndpointHealth]:
    """From the (tenant, endpoint, state) and (tenant, endpoint, updated_at) indexes: pending
    and failed deliveries are counted (they are few; delivered ones are the whole history)."""
    health: list[EndpointHealth] = []
    for endpoint in dict.fromkeys(endpoints):
        counts = dict(
            conn.execute(
                "SELECT state, count(*) FROM outbox_deliveries WHERE tenant_id = ?"
                " AND endpoint = ? AND state IN ('pending', 'failed') GROUP BY state",
                (tenant_id, endpoint),
            ).fetchall()
        )
        last = conn.execute(
            "SELECT last_status_code, last_error, updated_at FROM outbox_deliveries"
            " WHERE tenant_id = ? AND endpoint = ? AND attempts > 0"
            " ORDER BY updated_at DESC LIMIT 1",
            (tenant_id, endpoint),
        ).fetchone()
        health.append(
            EndpointHealth(
                tenant_id=tenant_id,
                endpoint=endpoint,
                pending=int(counts.get("pending", 0)),
                failed=int(counts.get("failed", 0)),
                last_status_code=None if last is None else last[0],
                last_error=None if last is None else last[1],
                last_attempt_at=None if last is None else last[2],
            )
        )
    return health
