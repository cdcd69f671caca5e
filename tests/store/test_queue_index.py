"""The SQLite queue's reads cost what they take, not the size of the backlog.

Work is counted in SQLite virtual-machine steps (``set_progress_handler``), not time: the same
query over a backlog ten times larger must take about the same number of steps. The claim that
sorted every due row by seq took 41,900 steps against 5,900 here, and fails."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from pipecored.store.sqlite import _claim_tx, _next_due_tx
from pipecored.store.sqlite_schema import migrate

NOW = 10_000.0


def _database(leased: int, scheduled: int, due: int) -> sqlite3.Connection:
    """A backlog: messages at the provider (leased until later), scheduled for later, and the
    ones due now (after an outage: many), in that seq order so every due row comes last."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    migrate(conn)
    rows: list[tuple[Any, ...]] = []
    for n in range(leased):
        rows.append((f"l{n}", "sending", NOW - 5, None, NOW + 600))
    for n in range(scheduled):
        rows.append((f"s{n}", "scheduled", NOW - 5, NOW + 3600, None))
    for n in range(due):
        rows.append((f"d{n}", "queued", NOW - 1 + n / 100_000, None, None))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO messages (id, tenant_id, channel, direction, to_json, status, created_at,"
        " updated_at, not_before, lease_until, lease_token, payload_json)"
        " VALUES (?, 't', 'sms', 'outbound', '\"+34600000000\"', ?, ?, ?, ?, ?, 'x', '{}')",
        [(i, st, c, c, nb, lu) for i, st, c, nb, lu in rows],
    )
    conn.execute("COMMIT")
    return conn


def _steps(conn: sqlite3.Connection, call: Callable[[], object]) -> tuple[int, object]:
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 1)
    try:
        result = call()
    finally:
        conn.set_progress_handler(None, 1)
    return steps, result


QUERIES: dict[str, Callable[[sqlite3.Connection], object]] = {
    "claim": lambda conn: [r.id for r in _claim_tx(conn, NOW, 5, 30.0, [])],
    "claim, one pair left out": lambda conn: [
        r.id for r in _claim_tx(conn, NOW, 5, 30.0, [("other", "sms")])
    ],
    "next_due": lambda conn: _next_due_tx(conn, []),
}


@pytest.mark.parametrize("name", QUERIES)
def test_a_queue_read_does_not_grow_with_the_backlog(name: str) -> None:
    query = QUERIES[name]
    small_conn = _database(leased=500, scheduled=500, due=500)
    large_conn = _database(leased=5_000, scheduled=5_000, due=5_000)
    small_steps, small = _steps(small_conn, lambda: query(small_conn))
    large_steps, large = _steps(large_conn, lambda: query(large_conn))
    assert small == large  # the same answer: the oldest due
    assert large_steps < 2 * small_steps, (small_steps, large_steps)


def test_the_answers_are_the_oldest_due() -> None:
    conn = _database(leased=50, scheduled=50, due=20)
    assert QUERIES["next_due"](conn) == NOW - 1
    assert QUERIES["claim"](conn) == ["d0", "d1", "d2", "d3", "d4"]
