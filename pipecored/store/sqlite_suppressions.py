"""The SQLite transactions behind a tenant's suppression list (SPEC section 9)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from pipecored.store.base import SuppressionRecord

_COLUMNS = "seq, tenant_id, channel, address, reason, created_at"


def suppress_tx(
    conn: sqlite3.Connection,
    tenant_id: str,
    channel: str,
    address: str,
    reason: str | None,
    now: float,
) -> bool:
    # OR IGNORE: a second STOP keeps the first one's reason and date, which is what a dispute
    # about consent needs.
    cursor = conn.execute(
        "INSERT OR IGNORE INTO suppressions (tenant_id, channel, address, reason, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (tenant_id, channel, address, reason, now),
    )
    return cursor.rowcount == 1


def unsuppress_tx(conn: sqlite3.Connection, tenant_id: str, channel: str, address: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM suppressions WHERE tenant_id = ? AND channel = ? AND address = ?",
        (tenant_id, channel, address),
    )
    return cursor.rowcount == 1


def suppressed_among_tx(
    conn: sqlite3.Connection, tenant_id: str, channel: str, addresses: Sequence[str]
) -> list[str]:
    if not addresses:
        return []
    marks = ", ".join("?" * len(addresses))
    found = {
        row[0]
        for row in conn.execute(
            f"SELECT address FROM suppressions"
            f" WHERE tenant_id = ? AND channel = ? AND address IN ({marks})",
            (tenant_id, channel, *addresses),
        )
    }
    return [address for address in dict.fromkeys(addresses) if address in found]


def list_suppressions_tx(
    conn: sqlite3.Connection,
    tenant_id: str,
    channel: str | None,
    after_seq: int | None,
    limit: int,
) -> list[SuppressionRecord]:
    query = f"SELECT {_COLUMNS} FROM suppressions WHERE tenant_id = ? AND seq > ?"
    params: list[object] = [tenant_id, after_seq or 0]
    if channel is not None:
        query += " AND channel = ?"
        params.append(channel)
    query += " ORDER BY seq LIMIT ?"
    params.append(limit)
    return [
        SuppressionRecord(
            seq=row[0],
            tenant_id=row[1],
            channel=row[2],
            address=row[3],
            reason=row[4],
            created_at=row[5],
        )
        for row in conn.execute(query, params)
    ]
