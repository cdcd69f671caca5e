"""The SQLite side of :meth:`MessageStore.activity`: a tenant's outbound messages per bucket of
whole hours, for the console's charts.

Counts come from ``message_counts`` (kept by triggers per tenant, hour, status, channel and
provider), so a month of hourly buckets reads a few thousand rows however many messages there
are. Latency percentiles come from the messages themselves through ``messages_tenant_created``:
all of a bucket's when it holds at most :data:`ACTIVITY_EXACT_LATENCY` messages, otherwise a
stratified sample (the first few messages of each of :data:`SAMPLE_SLICES` equal slices of the
time the bucket's messages span), so that a busy hour costs the same as a quiet one.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Final

from pipecored.store.base import (
    ACTIVITY_EXACT_LATENCY,
    ACTIVITY_HOUR,
    ActivityBucket,
    activity_starts,
)

SAMPLE_SLICES: Final = 64
SAMPLE_PER_SLICE: Final = 8

_COUNTS: Final = (
    "SELECT hour, status, sum(n) AS n, sum(measured) AS measured FROM message_counts"
    " WHERE tenant_id = ? AND hour >= ? AND hour < ? GROUP BY hour, status"
)
# INDEXED BY: with "latency_ms IS NOT NULL" in sight the planner could pick the latency index,
# which is ordered by latency and would be walked whole for one hour's messages.
_LATENCIES: Final = (
    "SELECT latency_ms FROM messages INDEXED BY messages_tenant_created"
    " WHERE tenant_id = ? AND created_at >= ? AND created_at < ? ORDER BY created_at LIMIT ?"
)

_EDGE: Final = (
    "SELECT created_at FROM messages INDEXED BY messages_tenant_created"
    " WHERE tenant_id = ? AND created_at >= ? AND created_at < ? ORDER BY created_at"
)


def _percentile(ordered: list[float], p: float) -> float | None:
    """Nearest rank, as the stats' percentiles."""
    if not ordered:
        return None
    rank = min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))
    return ordered[rank]


def _measured(rows: list[sqlite3.Row]) -> list[float]:
    return [r[0] for r in rows if r[0] is not None]


def _latencies(
    conn: sqlite3.Connection, tenant_id: str, start: float, end: float, accepted: int, measured: int
) -> tuple[list[float], bool]:
    """The bucket's latencies, and whether they are a sample."""
    if accepted <= ACTIVITY_EXACT_LATENCY:
        # inbound messages share the index range: read a bounded number of rows, and fall back
        # to the sample when they crowd the outbound ones out
        rows = conn.execute(
            _LATENCIES, (tenant_id, start, end, 4 * ACTIVITY_EXACT_LATENCY)
        ).fetchall()
        values = _measured(rows)
        if len(values) == measured:
            return values, False
    # slices over the span the bucket's messages actually cover: a burst of a few minutes in a
    # day-long bucket is sampled as finely as a day of steady traffic
    first = conn.execute(_EDGE + " ASC LIMIT 1", (tenant_id, start, end)).fetchone()
    last = conn.execute(_EDGE + " DESC LIMIT 1", (tenant_id, start, end)).fetchone()
    span_end = end
    if first is not None and last is not None:
        start, span_end = first[0], last[0]
    width = (span_end - start) / SAMPLE_SLICES
    values = []
    for i in range(SAMPLE_SLICES):
        low = start + i * width
        high = end if i == SAMPLE_SLICES - 1 else start + (i + 1) * width
        rows = conn.execute(_LATENCIES, (tenant_id, low, high, SAMPLE_PER_SLICE)).fetchall()
        values.extend(_measured(rows))
    return values, True


def activity_tx(
    conn: sqlite3.Connection, tenant_id: str, since: float, until: float, bucket_seconds: int
) -> list[ActivityBucket]:
    starts = activity_starts(since=since, until=until, bucket_seconds=bucket_seconds)
    if not starts:
        return []
    first = starts[0]
    end_hour = int((starts[-1] + bucket_seconds) // ACTIVITY_HOUR)
    counts = [
        {"accepted": 0, "sent": 0, "delivered": 0, "failed": 0, "measured": 0} for _ in starts
    ]
    rows = conn.execute(_COUNTS, (tenant_id, int(first // ACTIVITY_HOUR), end_hour)).fetchall()
    for row in rows:
        index = int((row["hour"] * ACTIVITY_HOUR - first) // bucket_seconds)
        bucket = counts[index]
        n: int = row["n"]
        bucket["accepted"] += n
        bucket["measured"] += row["measured"]
        status = row["status"]
        if status in ("delivered", "read"):
            bucket["delivered"] += n
        elif status in ("sent", "failed"):
            bucket[status] += n

    buckets = []
    for start, c in zip(starts, counts, strict=True):
        p50 = p95 = None
        sampled = False
        if c["measured"]:
            values, sampled = _latencies(
                conn, tenant_id, start, start + bucket_seconds, c["accepted"], c["measured"]
            )
            values.sort()
            p50, p95 = _percentile(values, 0.50), _percentile(values, 0.95)
        buckets.append(
            ActivityBucket(
                start=start,
                accepted=c["accepted"],
                sent=c["sent"],
                delivered=c["delivered"],
                failed=c["failed"],
                latency_p50_ms=p50,
                latency_p95_ms=p95,
                latency_sampled=sampled,
            )
        )
    return buckets
