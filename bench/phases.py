"""The four measurements: accept, delivery, tenants, reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import aiohttp

from bench.common import (
    ADMIN_KEY,
    HOST,
    PROVIDER_TOKEN,
    SEND_BODY,
    Procs,
    Workdir,
    http_json,
    http_request,
    rss_mb,
    start_bare,
    start_daemon,
    start_fake_provider,
    tenant_id,
    tenant_key,
    tenant_yaml,
    wait_ready,
    write_config,
)
from bench.loadgen import LoadResult, run_load
from bench.measure import CpuWindow, percentile
from bench.profiling import Recorder
from bench.results import Results, Row


@dataclass(frozen=True)
class Sizes:
    accept_seconds: float
    warmup_seconds: float
    connections: int
    delivery_n: int
    apprise_n: int
    provider_delay: float
    tenant_counts: tuple[int, ...]
    edit_trials: int
    big_tenant_messages: int
    other_tenant_messages: int
    read_tenants: int
    read_requests: int
    profile_seconds: float
    phase_timeout: float  # the longest any one wait of a phase may take


FULL = Sizes(
    accept_seconds=10,
    warmup_seconds=2,
    connections=32,
    delivery_n=4000,
    apprise_n=4000,
    provider_delay=0.1,
    tenant_counts=(1000, 10000),
    edit_trials=5,
    big_tenant_messages=1_000_000,
    other_tenant_messages=2_000,
    read_tenants=100,
    read_requests=300,
    profile_seconds=8,
    phase_timeout=180,
)

SMOKE = Sizes(
    accept_seconds=1,
    warmup_seconds=0.5,
    connections=8,
    delivery_n=100,
    apprise_n=40,
    provider_delay=0.1,
    tenant_counts=(20, 100),
    edit_trials=2,
    big_tenant_messages=3_000,
    other_tenant_messages=50,
    read_tenants=5,
    read_requests=20,
    profile_seconds=1,
    phase_timeout=60,
)


def _provider_url(port: int) -> str:
    return f"http://{HOST}:{port}"


def _daemon(
    procs: Procs, work: Workdir, config: Path, name: str, timeout: float
) -> tuple[int, int]:
    proc, port = start_daemon(procs, work, config, name)
    wait_ready(proc, port, "/readyz", timeout)
    return proc.pid, port


# -- 1. accept ---------------------------------------------------------------------------------

HOLD_SECONDS = 3600.0  # how long the "held" provider takes to answer: past the end of the run


def _one_tenant_daemon(
    procs: Procs, work: Workdir, sizes: Sizes, name: str, provider_delay: float
) -> tuple[int, int, int]:
    """A fake provider answering after ``provider_delay`` s and a daemon with one tenant sending
    to it, in a fresh folder called ``name``; returns the daemon's pid and port and the
    provider's port."""
    _, provider_port = start_fake_provider(procs, work, f"{name}-provider", provider_delay)
    folder = work.fresh(name)
    config = write_config(
        folder / "config",
        db=folder / "pipecored.db",
        provider_url=_provider_url(provider_port),
        tenants=1,
    )
    pid, port = _daemon(procs, work, config, f"{name}-daemon", sizes.phase_timeout)
    return pid, port, provider_port


def accept(work: Workdir, sizes: Sizes, results: Results, profile: bool) -> None:
    print("accept: POST /messaging/send/sms, closed loop", flush=True)
    conns, seconds = sizes.connections, sizes.accept_seconds
    key = tenant_key(0)
    with Procs(work.logs) as procs:
        pid, port, _ = _one_tenant_daemon(procs, work, sizes, "accept", provider_delay=0.0)
        run_load(port, key, connections=conns, duration=sizes.warmup_seconds)
        cpu = CpuWindow(pid).start()
        ours = run_load(port, key, connections=conns, duration=seconds)
        cpu.stop()
        profile_data = None
        if profile:
            recorder = Recorder(
                "accept (32 connections, delivery running)",
                pid,
                sizes.profile_seconds,
                work.path / "profile-accept.txt",
            )
            run_load(port, key, connections=conns, duration=sizes.profile_seconds + 1)
            profile_data = recorder.finish()
        auth = {"Authorization": f"Bearer {key}"}
        stored = http_json(port, "GET", f"/messaging/stats/{tenant_id(0)}", headers=auth)["total"]

        _, bare_port = start_bare(procs, work)
        run_load(bare_port, key, connections=conns, duration=sizes.warmup_seconds)
        bare = run_load(bare_port, key, connections=conns, duration=seconds)

        db = work.fresh("durable") / "durable.db"
        _, durable_port = start_bare(procs, work, "bench.durable_app:app", db)
        run_load(durable_port, key, connections=conns, duration=sizes.warmup_seconds)
        durable = run_load(durable_port, key, connections=conns, duration=seconds)

    # The same load with a provider that holds every call: no delivery competes with the
    # accepts, so this is the API and the store alone.
    with Procs(work.logs) as procs:
        _, port, _ = _one_tenant_daemon(procs, work, sizes, "accept-held", HOLD_SECONDS)
        run_load(port, key, connections=conns, duration=sizes.warmup_seconds)
        held = run_load(port, key, connections=conns, duration=seconds)

    if profile_data is not None:
        results.profiles.append(profile_data)
    _accept_rows(results, ours, bare, conns, cpu.share, stored)
    results.add(
        _beside_bare(
            f"sends/s at {conns} connections, deliveries held",
            held,
            bare,
            "the provider holds every call, so no delivery competes: API and store alone",
        )
    )
    results.add(
        _beside_bare(
            f"sends/s at {conns} connections, bare endpoint + store",
            durable,
            bare,
            "no gateway: the bare endpoint storing each body through pipecored's SQLite store"
            " (WAL, synchronous=FULL, group commit) before its 202, so what durability alone"
            " leaves of the ceiling",
        )
    )


def _beside_bare(metric: str, load: LoadResult, bare: LoadResult, what: str) -> Row:
    """A row with no target of its own: another load's rate beside the bare ceiling's."""
    return Row(
        "1 accept",
        metric,
        load.rate,
        "/s",
        bare.rate,
        "bare Starlette",
        note=(
            f"{what}; p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms;"
            f" {load.non2xx + load.socket_errors} non-2xx"
        ),
    )


def _accept_rows(
    results: Results, ours: LoadResult, bare: LoadResult, conns: int, cpu: float, stored: int
) -> None:
    ratio = ours.rate / bare.rate if bare.rate else 0.0
    results.add(
        Row(
            "1 accept",
            f"sends/s at {conns} connections",
            ours.rate,
            "/s",
            bare.rate,
            "bare Starlette",
            "≥ 0.5 x bare",
            ratio >= 0.5,
            f"{ours.tool}; daemon CPU {cpu:.0%} of a core; {stored:,} messages stored",
        )
    )
    results.add(Row("1 accept", "latency p50", ours.p50_ms, "ms", bare.p50_ms, "bare Starlette"))
    results.add(
        Row(
            "1 accept",
            "latency p99",
            ours.p99_ms,
            "ms",
            bare.p99_ms,
            "bare Starlette",
            "≤ 10 ms",
            ours.p99_ms <= 10,
        )
    )
    errors = ours.non2xx + ours.socket_errors
    results.add(
        Row(
            "1 accept",
            "non-2xx answers + socket errors",
            errors,
            "",
            bare.non2xx + bare.socket_errors,
            "bare Starlette",
            "0",
            errors == 0,
            f"of {ours.requests:,} requests",
        )
    )


# -- 2. delivery -------------------------------------------------------------------------------


async def _post_all(
    urls_and_bodies: Iterator[tuple[str, bytes, dict[str, str]]], limit: int
) -> int:
    """POST each request with at most ``limit`` in flight; returns how many answered 2xx."""
    ok = 0
    semaphore = asyncio.Semaphore(limit)
    connector = aiohttp.TCPConnector(limit=limit)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(url: str, body: bytes, headers: dict[str, str]) -> None:
            nonlocal ok
            async with semaphore, session.post(url, data=body, headers=headers) as response:
                await response.read()
                if 200 <= response.status < 300:
                    ok += 1

        await asyncio.gather(*(one(u, b, h) for u, b, h in urls_and_bodies))
    return ok


def _wait_delivered(fake_port: int, n: int, timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        stats: dict[str, float] = http_json(fake_port, "GET", "/stats")
        if stats["count"] >= n or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def _rate(n: int, t0: float, stats: dict[str, float]) -> float:
    last = stats.get("last")
    return min(n, int(stats["count"])) / (last - t0) if last and last > t0 else 0.0


def _pipecored_delivery(
    daemon_port: int, fake_port: int, n: int, timeout: float
) -> tuple[float, float, int]:
    """Accept n messages as fast as the daemon takes them; returns (delivered/s end to end,
    accepted/s, messages the provider received)."""
    url = f"http://{HOST}:{daemon_port}/messaging/send/sms"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {tenant_key(0)}"}
    body = json.dumps(SEND_BODY).encode()
    http_request(fake_port, "POST", "/reset")
    t0 = time.monotonic()
    accepted = asyncio.run(_post_all(((url, body, headers) for _ in range(n)), 64))
    accept_rate = accepted / (time.monotonic() - t0)
    if accepted != n:
        raise RuntimeError(f"only {accepted} of {n} sends were accepted")
    stats = _wait_delivered(fake_port, n, timeout)
    return _rate(n, t0, stats), accept_rate, int(stats["count"])


def _raw_aiohttp(fake_port: int, n: int, timeout: float) -> float:
    """The same provider requests the httpjson plugin makes, 256 in flight, from plain aiohttp."""
    url = f"http://{HOST}:{fake_port}/messages"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {PROVIDER_TOKEN}-0"}

    def requests() -> Iterator[tuple[str, bytes, dict[str, str]]]:
        for _ in range(n):
            payload = {
                "id": f"msg_{uuid.uuid4().hex}",
                "channel": "sms",
                "to": [SEND_BODY["to"]],
                "from": "+15550000000",
                "body": SEND_BODY["body"],
            }
            yield url, json.dumps(payload).encode(), headers

    http_request(fake_port, "POST", "/reset")
    t0 = time.monotonic()
    asyncio.run(asyncio.wait_for(_post_all(requests(), 256), timeout))
    return _rate(n, t0, _wait_delivered(fake_port, n, 5))


def _apprise(fake_port: int, n: int, timeout: float) -> float | None:
    """Apprise's json:// target through its asyncio API: one ``async_notify`` per notification,
    all awaited together (Apprise runs each blocking send in its own shared thread pool)."""
    try:
        import apprise
    except ImportError:
        return None

    async def notify_all() -> None:
        notifier = apprise.Apprise()
        notifier.add(f"json://{HOST}:{fake_port}/messages")
        semaphore = asyncio.Semaphore(256)

        async def one(i: int) -> None:
            async with semaphore:
                await notifier.async_notify(body=SEND_BODY["body"], title=f"message {i}")

        await asyncio.gather(*(one(i) for i in range(n)))

    http_request(fake_port, "POST", "/reset")
    t0 = time.monotonic()
    # on a timeout the rate below is over what arrived in time
    with contextlib.suppress(TimeoutError):
        asyncio.run(asyncio.wait_for(notify_all(), timeout))
    return _rate(n, t0, _wait_delivered(fake_port, n, 5))


def delivery(work: Workdir, sizes: Sizes, results: Results, profile: bool) -> None:
    n = sizes.delivery_n
    print(f"delivery: {n} messages to a provider answering in {sizes.provider_delay:g} s")
    with Procs(work.logs) as procs:
        pid, port, fake_port = _one_tenant_daemon(
            procs, work, sizes, "delivery", sizes.provider_delay
        )
        cpu = CpuWindow(pid).start()
        ours, accept_rate, received = _pipecored_delivery(port, fake_port, n, sizes.phase_timeout)
        cpu.stop()
        profile_data = None
        if profile:
            recorder = Recorder(
                f"delivery ({n} messages, provider answering in {sizes.provider_delay:g} s)",
                pid,
                max(1.0, n / max(ours, 1.0)),
                work.path / "profile-delivery.txt",
            )
            _pipecored_delivery(port, fake_port, n, sizes.phase_timeout)
            profile_data = recorder.finish()
        raw = _raw_aiohttp(fake_port, n, sizes.phase_timeout)
        with_apprise = _apprise(fake_port, sizes.apprise_n, sizes.phase_timeout)

    if profile_data is not None:
        results.profiles.append(profile_data)
    results.add(
        Row(
            "2 delivery",
            f"delivered/s end to end ({n:,} messages)",
            ours,
            "/s",
            raw,
            "raw aiohttp, 256 in flight",
            "≥ 0.6 x raw aiohttp",
            ours >= 0.6 * raw,
            f"accepts ran at {accept_rate:,.0f}/s; the provider got {received:,} requests;"
            f" daemon CPU {cpu.share:.0%} of a core",
        )
    )
    if with_apprise is None:
        results.add(Row("2 delivery", "Apprise json://", None, "/s", note="apprise not installed"))
    else:
        results.add(
            Row(
                "2 delivery",
                f"pipecored vs Apprise json:// ({sizes.apprise_n:,} notifications)",
                ours,
                "/s",
                with_apprise,
                "Apprise async_notify",
                "ahead of Apprise",
                ours > with_apprise,
            )
        )


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

            section = "3 tenants"
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
                        note=f"p99 {load.p99_ms:.1f} ms; {load.non2xx} non-2xx; compare with 1",
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


async def _latencies(port: int, paths: list[str], warmup: int) -> list[float]:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
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
        _, port = _daemon(procs, work, config, "reads-daemon", sizes.phase_timeout)
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
    targets = {"logs": 20.0, "stats": 200.0}
    for label, values in measured.items():
        limit = targets["logs" if "/logs/" in label else "stats"]
        p99 = percentile(values, 99)
        results.add(
            Row(
                "4 reads",
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
