"""The systems the throughput phases load, and the two runs they are measured by.

A :class:`System` is pipecored (one node, or several over one PostgreSQL store) or the floor
(``bench/floor_app.py``), each sending to its own fake provider. Both runs read the system's
CPU from ``/proc`` (every node's), and how many messages are stored and still pending straight
from its database, never through its API: polling the daemon would add to the CPU measured.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    HOST,
    ROOT,
    Procs,
    Workdir,
    http_json,
    http_request,
    start_app,
    start_daemon,
    wait_ready,
    write_config,
)
from bench.loadgen import LoadResult, run_loads
from bench.measure import CpuWindow

HELD_DELIVERY = {"timeout": "1h", "lease": "2h"}
PENDING = ("scheduled", "queued", "sending")  # pipecored's statuses still to be delivered

Counter = Callable[[], tuple[int, int]]  # (messages stored, messages still pending)


@dataclass
class System:
    name: str
    ports: list[int]
    pids: list[int]
    provider_port: int
    counts: Counter
    key: str


def sqlite_counts(db: Path, pending_sql: str) -> Counter:
    def counts() -> tuple[int, int]:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            total, pending = conn.execute(
                f"SELECT count(*), coalesce(sum({pending_sql}), 0) FROM messages"
            ).fetchone()
        finally:
            conn.close()
        return int(total), int(pending)

    return counts


def pipecored_pending_sql() -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in PENDING) + ")"


def postgres_counts(dsn: str) -> Counter:
    def counts() -> tuple[int, int]:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status = ANY(%s)) FROM messages",
                (list(PENDING),),
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    return counts


def start_pipecored(
    procs: Procs,
    work: Workdir,
    name: str,
    provider_port: int,
    *,
    key: str,
    store: str | None = None,
    nodes: int = 1,
    timeout: float = 180,
    held: bool = False,
    tree: Path = ROOT,
) -> System:
    """A config dir with one tenant sending to ``provider_port``, and ``nodes`` daemons on it
    (more than one only with a shared store). Without ``store``, a SQLite file in the folder.
    ``held``: the provider holds every call, and the daemon waits for it past the end of the
    run (no timeout, no retry, no lease running out), so that its worker, once full, claims
    nothing more and accepting is all the daemon does."""
    folder = work.fresh(name)
    db = folder / "pipecored.db"
    config = write_config(
        folder / "config",
        db=store or db,
        provider_url=f"http://{HOST}:{provider_port}",
        tenants=1,
        delivery=HELD_DELIVERY if held else None,
    )
    ports, pids = [], []
    for node in range(nodes):
        proc, port = start_daemon(procs, work, config, f"{name}-daemon{node or ''}", tree)
        wait_ready(proc, port, "/readyz", timeout)
        ports.append(port)
        pids.append(proc.pid)
    counts = (
        postgres_counts(store) if store else sqlite_counts(db, pipecored_pending_sql())
    )  # fmt: skip
    return System(name, ports, pids, provider_port, counts, key)


def start_floor(
    procs: Procs, work: Workdir, name: str, provider_port: int, *, deliver: bool, key: str
) -> System:
    """The floor, accept-only or delivering to ``provider_port``."""
    db = work.fresh(name) / "floor.db"
    env = {"BENCH_DB": str(db)}
    if deliver:
        env["BENCH_PROVIDER"] = f"http://{HOST}:{provider_port}"
    proc, port = start_app(procs, work, "bench.floor_app:app", env, name=name)
    return System(name, [port], [proc.pid], provider_port, sqlite_counts(db, "status < 2"), key)


# -- the runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptRun:
    load: LoadResult
    cpu_seconds: float

    @property
    def cpu_us_per_message(self) -> float:
        return 1e6 * self.cpu_seconds / self.load.requests if self.load.requests else 0.0


def accept_run(system: System, *, connections: int, seconds: float, warmup: float) -> AcceptRun:
    """Closed-loop sends for ``seconds`` after a warm-up (none when 0); CPU over the measured
    load."""
    if warmup > 0:
        run_loads(system.ports, system.key, connections=connections, duration=warmup)
    cpu = CpuWindow(*system.pids).start()
    load = run_loads(system.ports, system.key, connections=connections, duration=seconds)
    cpu.stop()
    return AcceptRun(load, cpu.seconds)


@dataclass(frozen=True)
class SustainedRun:
    load: LoadResult  # the sends, while the system delivers
    stored: int  # messages the load stored
    delivered: int  # provider requests received
    seconds: float  # from the load's start to the last provider request
    cpu_seconds: float  # every node's, from the load's start until nothing is pending

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_message(self) -> float:
        return 1e6 * self.cpu_seconds / self.delivered if self.delivered else 0.0


def _settle(system: System, timeout: float) -> tuple[int, int]:
    """Wait until nothing is pending and the stored count has stopped moving (sends that were
    in flight when the load generator stopped are stored a moment later)."""
    deadline = time.monotonic() + timeout
    last = -1
    while True:
        total, pending = system.counts()
        if (pending == 0 and total == last) or time.monotonic() > deadline:
            return total, pending
        last = total
        time.sleep(0.02)


def sustained_run(
    system: System, *, connections: int, seconds: float, warmup: float, timeout: float
) -> SustainedRun:
    """Sends for ``seconds`` while the system delivers, then until everything the load stored
    has reached the provider (and been recorded: CPU is read once nothing is pending)."""
    if warmup > 0:
        run_loads(system.ports, system.key, connections=connections, duration=warmup)
    before, _ = _settle(system, timeout)
    http_request(system.provider_port, "POST", "/reset")
    cpu = CpuWindow(*system.pids).start()
    t0 = time.monotonic()
    load = run_loads(system.ports, system.key, connections=connections, duration=seconds)
    after, pending = _settle(system, timeout)
    cpu.stop()
    stats = http_json(system.provider_port, "GET", "/stats")
    if pending:
        raise RuntimeError(f"{system.name}: {pending} messages still pending after {timeout} s")
    last = stats.get("last") or t0
    return SustainedRun(load, after - before, int(stats["count"]), last - t0, cpu.seconds)
