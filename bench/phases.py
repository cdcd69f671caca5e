"""The throughput phases, each against a floor or baseline run in the same benchmark (issue 19):
accept with deliveries held against the floor accept-only, sustained sending while delivering
against the floor delivering, and delivery at 100 ms provider latency against raw aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import aiohttp

from bench.common import (
    HOST,
    PROVIDER_TOKEN,
    SEND_BODY,
    Procs,
    Workdir,
    http_json,
    http_request,
    start_app,
    start_fake_provider,
    tenant_key,
)
from bench.measure import CpuWindow
from bench.profiling import Recorder
from bench.results import Results, Row
from bench.sizes import Sizes
from bench.systems import (
    AcceptRun,
    SustainedRun,
    System,
    accept_run,
    start_floor,
    start_pipecored,
    sustained_run,
)

HOLD_SECONDS = 3600.0  # how long the "held" provider takes to answer: past the end of the run
FLOOR = "floor"

_R = TypeVar("_R")


def alternate(rounds: int, runs: Sequence[tuple[str, Callable[[], _R]]]) -> dict[str, list[_R]]:
    """Each run ``rounds`` times, interleaved (A B A B), so that a noisy minute on the shared
    machine falls on both sides rather than on one."""
    out: dict[str, list[_R]] = {name: [] for name, _ in runs}
    for _ in range(rounds):
        for name, run in runs:
            out[name].append(run())
    return out


def spread(values: Sequence[float], fmt: str = ",.0f") -> str:
    return " / ".join(format(v, fmt) for v in values)


def rounds_note(rounds: int) -> str:
    return f"best of {rounds} alternating rounds" if rounds > 1 else "one round"


# -- 1. accept, deliveries held ----------------------------------------------------------------


def accept(work: Workdir, sizes: Sizes, results: Results, profile: bool) -> None:
    """pipecored with a provider that holds every call (so no delivery competes: the API and
    the store alone) against the floor accept-only; bare Starlette and bare + pipecored's store
    beside them, without targets."""
    print("accept: POST /messaging/send/sms, closed loop, deliveries held", flush=True)
    conns, seconds, warm = sizes.connections, sizes.accept_seconds, sizes.warmup_seconds
    key = tenant_key(0)
    with Procs(work.logs) as procs:
        _, held_provider = start_fake_provider(procs, work, "accept-provider", HOLD_SECONDS)
        ours = start_pipecored(
            procs, work, "accept", held_provider, key=key, timeout=sizes.phase_timeout, held=True
        )
        floor = start_floor(procs, work, "accept-floor", held_provider, deliver=False, key=key)
        systems = [(FLOOR, floor), ("pipecored", ours)]
        if work.against is not None:
            rev, tree = work.against
            systems.append((rev, start_pipecored(
                procs, work, "accept-against", held_provider, key=key,
                timeout=sizes.phase_timeout, held=True, tree=tree,
            )))  # fmt: skip

        def run(system: System) -> Callable[[], AcceptRun]:
            return lambda: accept_run(system, connections=conns, seconds=seconds, warmup=warm)

        runs = alternate(sizes.rounds, [(name, run(system)) for name, system in systems])
        profile_data = None
        if profile:
            recorder = Recorder(
                f"accept, deliveries held ({conns} connections)",
                ours.pids[0],
                sizes.profile_seconds,
                work.path / "profile-accept.txt",
            )
            accept_run(ours, connections=conns, seconds=sizes.profile_seconds + 1, warmup=0)
            profile_data = recorder.finish()

        bare_proc, bare_port = start_app(procs, work, "bench.bare_app:app")
        bare = accept_run(
            System("bare", [bare_port], [bare_proc.pid], 0, lambda: (0, 0), key),
            connections=conns,
            seconds=seconds,
            warmup=warm,
        )
        db = work.fresh("durable") / "durable.db"
        durable_proc, durable_port = start_app(
            procs, work, "bench.durable_app:app", {"BENCH_DB": str(db)}
        )
        durable = accept_run(
            System("durable", [durable_port], [durable_proc.pid], 0, lambda: (0, 0), key),
            connections=conns,
            seconds=seconds,
            warmup=warm,
        )

    if profile_data is not None:
        results.profiles.append(profile_data)
    _accept_rows(results, conns, runs["pipecored"], runs[FLOOR], bare, durable)
    if work.against is not None:
        rev = work.against[0]
        accept_ab_row(results, "", rev, runs["pipecored"], runs[rev])


def accept_ab_row(
    results: Results, label: str, rev: str, ours: list[AcceptRun], earlier: list[AcceptRun]
) -> None:
    """The A/B row of an accept phase run with ``--against``: this tree's rounds against
    ``rev``'s, alternated in the same run."""
    results.add(
        Row(
            "A/B",
            f"accept sends/s, deliveries held{label}, against {rev}",
            max(r.load.rate for r in ours),
            "/s",
            max(r.load.rate for r in earlier),
            rev,
            note=f"{spread([r.load.rate for r in ours])} against"
            f" {spread([r.load.rate for r in earlier])} at {rev}; p99"
            f" {min(r.load.p99_ms for r in ours):.1f} ms against"
            f" {min(r.load.p99_ms for r in earlier):.1f} ms; CPU per accept"
            f" {spread([r.cpu_us_per_message for r in ours])} µs against"
            f" {spread([r.cpu_us_per_message for r in earlier])} µs",
        )
    )


def _accept_rows(
    results: Results,
    conns: int,
    ours: list[AcceptRun],
    floor: list[AcceptRun],
    bare: AcceptRun,
    durable: AcceptRun,
) -> None:
    section, n = "1 accept", len(ours)
    rate, floor_rate = max(r.load.rate for r in ours), max(r.load.rate for r in floor)
    p99, floor_p99 = min(r.load.p99_ms for r in ours), min(r.load.p99_ms for r in floor)
    results.add(
        Row(
            section,
            f"sends/s at {conns} connections, deliveries held",
            rate,
            "/s",
            floor_rate,
            "floor, accept-only",
            "≥ 0.85 x floor",
            rate >= 0.85 * floor_rate,
            f"{rounds_note(n)}: {spread([r.load.rate for r in ours])} against"
            f" {spread([r.load.rate for r in floor])}; the provider holds every call, so no"
            " delivery competes: the API and the store alone",
        )
    )
    results.add(
        Row(
            section,
            "latency p99, deliveries held",
            p99,
            "ms",
            floor_p99,
            "floor, accept-only",
            "≤ 1.5 x floor",
            p99 <= 1.5 * floor_p99,
            f"p50 {min(r.load.p50_ms for r in ours):.1f} ms against"
            f" {min(r.load.p50_ms for r in floor):.1f} ms",
        )
    )
    cpu = min(r.cpu_us_per_message for r in ours)
    floor_cpu = min(r.cpu_us_per_message for r in floor)
    results.add(
        Row(
            section,
            "CPU per accepted message, deliveries held",
            cpu,
            "µs",
            floor_cpu,
            "floor, accept-only",
            note="the daemon's user + system CPU (/proc) over the load, per 202",
        )
    )
    errors = sum(r.load.non2xx + r.load.socket_errors for r in ours)
    results.add(
        Row(
            section,
            "non-2xx answers + socket errors",
            errors,
            "",
            target="0",
            ok=errors == 0,
            note=f"of {sum(r.load.requests for r in ours):,} requests",
        )
    )
    results.add(
        Row(
            section,
            f"sends/s at {conns} connections, bare Starlette",
            bare.load.rate,
            "/s",
            floor_rate,
            "floor, accept-only",
            note=(
                "the stack's ceiling: parse the JSON and answer 202, nothing stored;"
                f" p99 {bare.load.p99_ms:.1f} ms, {bare.cpu_us_per_message:.0f} µs CPU per request"
            ),
        )
    )
    results.add(
        Row(
            section,
            f"sends/s at {conns} connections, bare + pipecored's store",
            durable.load.rate,
            "/s",
            floor_rate,
            "floor, accept-only",
            note=(
                "the bare endpoint storing each body through pipecored's SQLiteStore (its"
                " schema, indexes and triggers) with no gateway work: the store's share of the"
                f" gap; p99 {durable.load.p99_ms:.1f} ms,"
                f" {durable.cpu_us_per_message:.0f} µs CPU per request"
            ),
        )
    )


# -- 2. sustained: sending while delivering ----------------------------------------------------


def sustained(work: Workdir, sizes: Sizes, results: Results, profile: bool) -> None:
    """wrk sends for ``accept_seconds`` while the system delivers to a provider answering at
    once, until everything stored has reached the provider: messages per second end to end and
    CPU per message, pipecored against the floor delivering."""
    print("sustained: sends while delivering to a 0 ms provider, until all delivered", flush=True)
    conns, key = sizes.connections, tenant_key(0)
    with Procs(work.logs) as procs:
        _, ours_provider = start_fake_provider(procs, work, "sustained-provider", 0.0)
        _, floor_provider = start_fake_provider(procs, work, "sustained-floor-provider", 0.0)
        ours = start_pipecored(
            procs, work, "sustained", ours_provider, key=key, timeout=sizes.phase_timeout
        )
        floor = start_floor(procs, work, "sustained-floor", floor_provider, deliver=True, key=key)
        systems = [(FLOOR, floor), ("pipecored", ours)]
        if work.against is not None:
            rev, tree = work.against
            _, against_provider = start_fake_provider(procs, work, "against-provider", 0.0)
            systems.append((rev, start_pipecored(
                procs, work, "sustained-against", against_provider, key=key,
                timeout=sizes.phase_timeout, tree=tree,
            )))  # fmt: skip
        runs = alternate(
            sizes.rounds, [(name, _sustained(system, sizes)) for name, system in systems]
        )
        profile_data = None
        if profile:
            recorder = Recorder(
                f"sustained (sends for {sizes.profile_seconds:g} s while delivering)",
                ours.pids[0],
                sizes.profile_seconds,
                work.path / "profile-sustained.txt",
            )
            sustained_run(
                ours,
                connections=conns,
                seconds=sizes.profile_seconds,
                warmup=0,
                timeout=sizes.phase_timeout,
            )
            profile_data = recorder.finish()
    if profile_data is not None:
        results.profiles.append(profile_data)
    sustained_rows(results, "2 sustained", sizes, runs["pipecored"], runs[FLOOR], targets=True)
    if work.against is not None:
        rev = work.against[0]
        sustained_ab_rows(results, "", rev, runs["pipecored"], runs[rev])


def sustained_ab_rows(
    results: Results,
    label: str,
    rev: str,
    ours: list[SustainedRun],
    earlier: list[SustainedRun],
) -> None:
    """The A/B rows of a sustained phase run with ``--against``: delivered/s (best: highest)
    and CPU per message (best: lowest)."""
    measures: list[tuple[str, str, Callable[[list[float]], float], Callable[[SustainedRun], float]]]
    measures = [
        ("delivered/s", "/s", max, lambda r: r.rate),
        ("CPU per message", "µs", min, lambda r: r.cpu_us_per_message),
    ]
    for what, unit, best, value in measures:
        mine, theirs = [value(r) for r in ours], [value(r) for r in earlier]
        results.add(
            Row(
                "A/B",
                f"sustained {what}{label}, against {rev}",
                best(mine),
                unit,
                best(theirs),
                rev,
                note=f"{spread(mine)} against {spread(theirs)}",
            )
        )


def _sustained(system: System, sizes: Sizes) -> Callable[[], SustainedRun]:
    return lambda: sustained_run(
        system,
        connections=sizes.connections,
        seconds=sizes.accept_seconds,
        warmup=sizes.warmup_seconds,
        timeout=sizes.phase_timeout,
    )


def sustained_rows(
    results: Results,
    section: str,
    sizes: Sizes,
    ours: list[SustainedRun],
    floor: list[SustainedRun],
    *,
    targets: bool,
    label: str = "",
) -> None:
    rate, floor_rate = max(r.rate for r in ours), max(r.rate for r in floor)
    best = max(ours, key=lambda r: r.rate)
    results.add(
        Row(
            section,
            f"delivered/s end to end, sends for {sizes.accept_seconds:g} s{label}",
            rate,
            "/s",
            floor_rate,
            "floor, delivering",
            "≥ 0.6 x floor" if targets else "",
            rate >= 0.6 * floor_rate if targets else None,
            f"{rounds_note(len(ours))}: {spread([r.rate for r in ours])} against"
            f" {spread([r.rate for r in floor])}; best round: {best.stored:,} stored,"
            f" {best.delivered:,} provider requests in {best.seconds:.1f} s, sends accepted at"
            f" {best.load.rate:,.0f}/s (p99 {best.load.p99_ms:.1f} ms,"
            f" {best.load.non2xx + best.load.socket_errors} non-2xx)",
        )
    )
    cpu = min(r.cpu_us_per_message for r in ours)
    floor_cpu = min(r.cpu_us_per_message for r in floor)
    results.add(
        Row(
            section,
            f"CPU per message end to end{label}",
            cpu,
            "µs",
            floor_cpu,
            "floor, delivering",
            "≤ 1.6 x floor" if targets else "",
            cpu <= 1.6 * floor_cpu if targets else None,
            "accept + claim + provider call + complete: user + system CPU (/proc) of every"
            " daemon process from the first send until nothing is pending, per message"
            f" delivered; {spread([r.cpu_us_per_message for r in ours])} against"
            f" {spread([r.cpu_us_per_message for r in floor])} µs",
        )
    )


# -- 3. delivery at 100 ms provider latency ----------------------------------------------------
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


def _raw_aiohttp(fake_port: int, n: int, timeout: float) -> tuple[float, float]:
    """The same provider requests the httpjson plugin makes, 256 in flight, from plain aiohttp;
    returns (requests/s, CPU µs per request, of this process: it runs the loop itself)."""
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
    t0, cpu0 = time.monotonic(), time.process_time()
    asyncio.run(asyncio.wait_for(_post_all(requests(), 256), timeout))
    cpu = time.process_time() - cpu0
    return _rate(n, t0, _wait_delivered(fake_port, n, 5)), 1e6 * cpu / n


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
        _, fake_port = start_fake_provider(procs, work, "delivery-provider", sizes.provider_delay)
        ours = start_pipecored(
            procs, work, "delivery", fake_port, key=tenant_key(0), timeout=sizes.phase_timeout
        )

        def pipecored_run() -> tuple[float, float, int, float]:
            cpu = CpuWindow(*ours.pids).start()
            rate, accept_rate, received = _pipecored_delivery(
                ours.ports[0], fake_port, n, sizes.phase_timeout
            )
            cpu.stop()
            return rate, accept_rate, received, 1e6 * cpu.seconds / max(1, received)

        runs = alternate(
            sizes.rounds,
            [
                ("raw", lambda: _raw_aiohttp(fake_port, n, sizes.phase_timeout)),
                ("pipecored", pipecored_run),
            ],
        )
        profile_data = None
        if profile:
            best = max(r[0] for r in runs["pipecored"])
            recorder = Recorder(
                f"delivery ({n} messages, provider answering in {sizes.provider_delay:g} s)",
                ours.pids[0],
                max(1.0, n / max(best, 1.0)),
                work.path / "profile-delivery.txt",
            )
            _pipecored_delivery(ours.ports[0], fake_port, n, sizes.phase_timeout)
            profile_data = recorder.finish()
        with_apprise = _apprise(fake_port, sizes.apprise_n, sizes.phase_timeout)

    if profile_data is not None:
        results.profiles.append(profile_data)
    section = "3 delivery"
    rate, accept_rate, received, _ = max(runs["pipecored"])
    raw_rate, raw_cpu = max(r[0] for r in runs["raw"]), min(r[1] for r in runs["raw"])
    results.add(
        Row(
            section,
            f"delivered/s end to end ({n:,} messages, 256 in flight)",
            rate,
            "/s",
            raw_rate,
            "raw aiohttp, 256 in flight",
            "≥ 0.8 x raw aiohttp",
            rate >= 0.8 * raw_rate,
            f"{rounds_note(sizes.rounds)}: {spread([r[0] for r in runs['pipecored']])}"
            f" against {spread([r[0] for r in runs['raw']])}; best round: sends accepted at"
            f" {accept_rate:,.0f}/s, the provider got {received:,} requests",
        )
    )
    results.add(
        Row(
            section,
            "CPU per message delivered",
            min(r[3] for r in runs["pipecored"]),
            "µs",
            raw_cpu,
            "raw aiohttp",
            note="the daemon's (accept and delivery) against the raw loop's own process",
        )
    )
    if with_apprise is None:
        results.add(Row(section, "Apprise json://", None, "/s", note="apprise not installed"))
    else:
        results.add(
            Row(
                section,
                f"pipecored vs Apprise json:// ({sizes.apprise_n:,} notifications)",
                rate,
                "/s",
                with_apprise,
                "Apprise async_notify",
                "ahead of Apprise",
                rate > with_apprise,
            )
        )
