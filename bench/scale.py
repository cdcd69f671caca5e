"""The scale phases: many tenants (start-up, memory, hot reload) and reads over a million
messages."""

from __future__ import annotations

import asyncio
import http.client
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import aiohttp

from bench.common import (
    ADMIN_KEY,
    HOST,
    SEND_BODY,
    Procs,
    Workdir,
    http_json,
    rss_mb,
    start_daemon,
    start_fake_provider,
    tenant_id,
    tenant_key,
    tenant_yaml,
    wait_ready,
    write_config,
)
from bench.loadgen import run_load
from bench.measure import percentile
from bench.results import Results, Row
from bench.sizes import Sizes


def _provider_url(port: int) -> str:
    return f"http://{HOST}:{port}"


# -- 3. tenants --------------------------------------------------------------------------------


def _edit_live(port: int, config: Path, index: int, trials: int, timeout: float) -> list[float]:
    """Rewrite one tenant file with a new name; time until GET /messaging/config shows it."""
    path = config / "tenants" / f"{tenant_id(index)}.yaml"
    provider_url = next(
        line.split(":", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.strip().startswith("baseUrl:")
    )
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    times: list[float] = []
    for trial in range(trials):
        name = f"Edited {trial} {uuid.uuid4().hex[:6]}"
        t0 = time.monotonic()
        path.write_text(tenant_yaml(index, provider_url, name=name), encoding="utf-8")
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            view = http_json(port, "GET", f"/messaging/config/{tenant_id(index)}", headers=headers)
            if view.get("name") == name:
                times.append((time.monotonic() - t0) * 1000)
                break
            time.sleep(0.002)
        else:
            times.append(float("nan"))
        time.sleep(0.3)
    return times


def tenants(work: Workdir, sizes: Sizes, results: Results) -> None:
    print(f"tenants: startup, memory and hot reload with {sizes.tenant_counts} tenant files")
    largest = max(sizes.tenant_counts)
    with Procs(work.logs) as procs:
        _, fake_port = start_fake_provider(procs, work, "tenants-provider", 0.0)
        for count in sizes.tenant_counts:
            folder = work.fresh(f"tenants-{count}")
            config = write_config(
                folder / "config",
                db=folder / "pipecored.db",
                provider_url=_provider_url(fake_port),
                tenants=count,
            )
            t0 = time.monotonic()
            proc, port = start_daemon(procs, work, config, f"tenants-{count}-daemon")
            startup = wait_ready(proc, port, "/readyz", sizes.phase_timeout) - t0
            time.sleep(1.0)  # let the watcher settle before editing
            rss, peak = rss_mb(proc.pid)
            edits = _edit_live(port, config, count // 2, sizes.edit_trials, timeout=10)
            load = None
            if count == largest:
                run_load(port, tenant_key(1), connections=sizes.connections, duration=1)
                load = run_load(
                    port,
                    tenant_key(1),
                    connections=sizes.connections,
                    duration=max(1.0, sizes.accept_seconds / 2),
                )
            proc.stop()

            section = "5 tenants"
            results.add(
                Row(
                    section,
                    f"startup to /readyz, {count:,} tenants",
                    startup,
                    "s",
                    target="≤ 5 s",
                    ok=startup <= 5,
                )
            )
            results.add(
                Row(
                    section,
                    f"RSS after start, {count:,} tenants",
                    rss,
                    "MiB",
                    target="≤ 200 MiB",
                    ok=rss <= 200,
                    note=f"peak (VmHWM) {peak:.0f} MiB",
                )
            )
            worst = max(edits)
            results.add(
                Row(
                    section,
                    f"tenant edit live, {count:,} tenants (median of {len(edits)})",
                    percentile(edits, 50),
                    "ms",
                    target="≤ 200 ms",
                    ok=worst <= 200,
                    note=f"worst {worst:.0f} ms; the watcher debounces 50 ms",
                )
            )
            if load is not None:
                results.add(
                    Row(
                        section,
                        f"sends/s with {count:,} tenants loaded",
                        load.rate,
                        "/s",
                        note=f"while delivering to a 0 ms provider; p99 {load.p99_ms:.1f} ms;"
                        f" {load.non2xx} non-2xx; compare with the accept rate of 2",
                    )
                )


# -- 4. reads ----------------------------------------------------------------------------------

_COLUMNS = (
    "id, tenant_id, channel, direction, provider, to_json, sender, status, attempt_count,"
    " provider_message_id, created_at, updated_at, sent_at, route_index, route_attempts,"
    " payload_json, body_preview, latency_ms"
)


def _rows(big: int, others: int, tenants: int, now: float) -> Iterator[tuple[object, ...]]:
    """Messages of the last 30 days: tenant 0 holds ``big``, each other tenant ``others``,
    interleaved as they would arrive. All settled (nothing for the delivery worker to claim)."""
    total = big + others * (tenants - 1)
    span = 30 * 24 * 3600.0
    other_every = total / max(1, others * (tenants - 1)) if others else 0
    payload = json.dumps({"to": [SEND_BODY["to"]], "body": SEND_BODY["body"]})
    to_json = json.dumps([SEND_BODY["to"]])
    statuses = ("delivered",) * 14 + ("read",) * 3 + ("sent", "failed")
    next_other, other_i = other_every, 0
    for i in range(total):
        if others and i >= next_other and other_i < others * (tenants - 1):
            tenant = 1 + other_i % (tenants - 1)
            other_i += 1
            next_other += other_every
        else:
            tenant = 0
        created = now - span + span * i / total
        status = statuses[i % len(statuses)]
        latency = None if status in ("sent", "failed") else 400.0 + (i * 7919) % 5000
        yield (
            f"msg_{i:012x}{uuid.uuid4().hex[:12]}",
            tenant_id(tenant),
            "sms",
            "outbound",
            "httpjson",
            to_json,
            "+15550000000",
            status,
            1,
            f"fp-{i}",
            created,
            created + 1.0,
            created + 0.5,
            0,
            1,
            payload,
            None,
            latency,
        )


def generate_database(path: Path, big: int, others: int, tenants: int) -> int:
    """The store's own schema (SQLiteStore.open runs the migrations), then bulk inserts in big
    transactions; the triggers keep the per-hour counts as they would in the daemon."""
    from pipecored.store.sqlite import SQLiteStore

    async def create() -> None:
        store = SQLiteStore(str(path))
        await store.open()
        await store.close()

    asyncio.run(create())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")  # 256 MiB
    placeholders = ", ".join("?" * len(_COLUMNS.split(",")))
    sql = f"INSERT INTO messages ({_COLUMNS}) VALUES ({placeholders})"
    batch: list[tuple[object, ...]] = []
    inserted = 0
    for row in _rows(big, others, tenants, time.time()):
        batch.append(row)
        if len(batch) >= 50_000:
            conn.execute("BEGIN")
            conn.executemany(sql, batch)
            conn.execute("COMMIT")
            inserted += len(batch)
            batch.clear()
    if batch:
        conn.execute("BEGIN")
        conn.executemany(sql, batch)
        conn.execute("COMMIT")
        inserted += len(batch)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    return inserted


def _console_login(port: int) -> str:
    """Log in to the console with the admin key, as its login form does; the session cookie."""
    origin = f"http://{HOST}:{port}"
    status, _, headers = _post_form(
        port, "/console/login", f"key={ADMIN_KEY}&next=/console/", {"Origin": origin}
    )
    cookie = next((v.split(";", 1)[0] for k, v in headers if k.lower() == "set-cookie"), None)
    if status != 303 or cookie is None:
        raise RuntimeError(f"console login: HTTP {status}, no session cookie")
    return cookie


def _post_form(
    port: int, path: str, body: str, headers: dict[str, str]
) -> tuple[int, bytes, list[tuple[str, str]]]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(
            "POST",
            path,
            body=body.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        )
        response = conn.getresponse()
        return response.status, response.read(), response.getheaders()
    finally:
        conn.close()


async def _latencies(
    port: int, paths: list[str], warmup: int, headers: dict[str, str] | None = None
) -> list[float]:
    headers = headers or {"Authorization": f"Bearer {ADMIN_KEY}"}
    out: list[float] = []
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i, path in enumerate(paths):
            t0 = time.perf_counter()
            async with session.get(f"http://{HOST}:{port}{path}", headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"GET {path}: HTTP {response.status}")
            if i >= warmup:
                out.append((time.perf_counter() - t0) * 1000)
    return out


def reads(work: Workdir, sizes: Sizes, results: Results) -> None:
    big, others, count = sizes.big_tenant_messages, sizes.other_tenant_messages, sizes.read_tenants
    print(f"reads: logs and stats for a tenant with {big:,} messages among {count} tenants")
    folder = work.fresh("reads")
    db = folder / "pipecored.db"
    t0 = time.monotonic()
    total = generate_database(db, big, others, count)
    generated = time.monotonic() - t0
    print(f"  generated {total:,} messages in {generated:.1f} s", flush=True)
    with Procs(work.logs) as procs:
        _, fake_port = start_fake_provider(procs, work, "reads-provider", 0.0)
        config = write_config(
            folder / "config", db=db, provider_url=_provider_url(fake_port), tenants=count
        )
        proc, port = start_daemon(procs, work, config, "reads-daemon")
        wait_ready(proc, port, "/readyz", sizes.phase_timeout)
        warm, n = 10, sizes.read_requests
        tenant = tenant_id(0)
        since = quote((datetime.now(UTC) - timedelta(days=1)).isoformat())
        cases = {
            "GET /messaging/logs/{t}?limit=50": f"/messaging/logs/{tenant}?limit=50",
            "GET /messaging/stats/{t}": f"/messaging/stats/{tenant}",
            "GET /messaging/stats/{t}?since=24 h ago": f"/messaging/stats/{tenant}?since={since}",
        }
        measured = {
            label: asyncio.run(_latencies(port, [path] * (warm + n), warm))
            for label, path in cases.items()
        }
        cookie = _console_login(port)
        message = http_json(
            port,
            "GET",
            f"/messaging/logs/{tenant}?limit=1",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )["items"][0]["id"]
        pages = {
            "GET /console/ (tenants)": "/console/",
            "GET /console/tenants/{t} (24 h charts)": f"/console/tenants/{tenant}",
            "GET /console/tenants/{t}?range=30d": f"/console/tenants/{tenant}?range=30d",
            "GET /console/tenants/{t}/log": f"/console/tenants/{tenant}/log",
            "GET /console/tenants/{t}/log?status=failed": f"/console/tenants/{tenant}/log"
            "?status=failed",
            "GET /console/tenants/{t}/messages/{id}": f"/console/tenants/{tenant}/messages/"
            + message,
        }
        for label, path in pages.items():
            measured[label] = asyncio.run(
                _latencies(port, [path] * (warm + n), warm, {"Cookie": cookie})
            )
    targets = {"logs": 20.0, "stats": 200.0, "console": 100.0}
    for label, values in measured.items():
        limit = targets[next(k for k in ("console", "logs", "stats") if k in label)]
        p99 = percentile(values, 99)
        results.add(
            Row(
                "6 reads",
                f"{label} p50 / p99",
                percentile(values, 50),
                "ms",
                target=f"≤ {limit:g} ms (p99)",
                ok=p99 <= limit,
                note=f"p99 {p99:.1f} ms over {len(values)} requests",
            )
        )
    results.notes.append(
        f"Reads: tenant {tenant} holds {big:,} of {total:,} messages ({count} tenants), generated"
        f" straight into SQLite with the store's schema in {generated:.0f} s."
    )
