"""PostgreSQL rows: accept (deliveries held) and sustained sending while delivering, on one node
and on two nodes sharing the database, beside the same floors as the SQLite rows.

Each measurement gets a database of its own, created for it and dropped after it, on the server
named by ``BENCH_POSTGRES_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``, the
machine's PostgreSQL with trust auth, as in CI). The phase runs when the daemon accepts a
``postgresql://`` store (``pipecored check`` says whether) and a server answers; otherwise its
row says why it did not run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.common import (
    ROOT,
    Procs,
    Workdir,
    child_env,
    start_fake_provider,
    tenant_key,
    write_config,
)
from bench.phases import (
    FLOOR,
    HOLD_SECONDS,
    accept_ab_row,
    alternate,
    rounds_note,
    spread,
    sustained_ab_rows,
    sustained_rows,
)
from bench.results import Results, Row
from bench.sizes import Sizes
from bench.systems import (
    AcceptRun,
    SustainedRun,
    accept_run,
    start_floor,
    start_pipecored,
    sustained_run,
)

SECTION = "4 postgres"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_dsn() -> str:
    return os.environ.get("BENCH_POSTGRES_DSN") or DEFAULT_DSN


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def fresh_database(dsn: str) -> Iterator[str]:
    """A new, empty database on the server of ``dsn``; its URL, dropped afterwards."""
    import psycopg

    name = f"pipecored_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(dsn, name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def unavailable(work: Workdir, dsn: str) -> str | None:
    """Why the PostgreSQL rows cannot run here, or None when they can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at {urlsplit(dsn).netloc}: {str(exc).strip()[:200]}"
    config = write_config(
        work.fresh("postgres-check") / "config",
        db=_with_database(dsn, "pipecored_bench_check"),
        provider_url="http://127.0.0.1:9",
        tenants=1,
    )
    done = subprocess.run(
        [sys.executable, "-m", "pipecored", "check", "--config", str(config)],
        env=child_env(work.plugin_site),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip().replace("\n", "; ")[:300]
        return f"the daemon does not accept a postgresql:// store ({said})"
    return None


def postgres(work: Workdir, sizes: Sizes, results: Results, dsn: str) -> None:
    reason = unavailable(work, dsn)
    if reason is not None:
        print(f"postgres: not run: {reason}", flush=True)
        results.add(Row(SECTION, "PostgreSQL store", None, "", note=f"not run: {reason}"))
        return
    print("postgres: accept and sustained on PostgreSQL, one node and two", flush=True)
    conns, seconds, warm = sizes.connections, sizes.accept_seconds, sizes.warmup_seconds
    key = tenant_key(0)
    with Procs(work.logs) as procs, contextlib.ExitStack() as databases:
        _, held = start_fake_provider(procs, work, "pg-accept-provider", HOLD_SECONDS)
        floor = start_floor(procs, work, "pg-accept-floor", held, deliver=False, key=key)
        systems = {
            FLOOR: floor,
            **{
                name: start_pipecored(
                    procs,
                    work,
                    f"pg-accept-{nodes}{suffix}",
                    held,
                    key=key,
                    store=databases.enter_context(fresh_database(dsn)),
                    nodes=nodes,
                    timeout=sizes.phase_timeout,
                    held=True,
                    tree=tree,
                )
                for name, nodes, suffix, tree in _systems(work)
            },
        }

        def accept_of(name: str) -> Callable[[], AcceptRun]:
            system = systems[name]
            return lambda: accept_run(system, connections=conns, seconds=seconds, warmup=warm)

        accepts = alternate(sizes.rounds, [(name, accept_of(name)) for name in systems])

    for name in ("1 node", "2 nodes"):
        runs, floor_runs = accepts[name], accepts[FLOOR]
        rate = max(r.load.rate for r in runs)
        best = max(runs, key=lambda r: r.load.rate)
        results.add(
            Row(
                SECTION,
                f"sends/s at {conns} connections, deliveries held, {name}",
                rate,
                "/s",
                max(r.load.rate for r in floor_runs),
                "floor, accept-only",
                note=(
                    f"{rounds_note(len(runs))}: {spread([r.load.rate for r in runs])};"
                    f" p99 {best.load.p99_ms:.1f} ms (floor"
                    f" {min(r.load.p99_ms for r in floor_runs):.1f} ms);"
                    f" {best.cpu_us_per_message:.0f} µs CPU per accept (floor"
                    f" {min(r.cpu_us_per_message for r in floor_runs):.0f});"
                    f" {sum(r.load.non2xx + r.load.socket_errors for r in runs)} non-2xx"
                ),
            )
        )

    with Procs(work.logs) as procs, contextlib.ExitStack() as databases:
        _, floor_provider = start_fake_provider(procs, work, "pg-floor-provider", 0.0)
        floor = start_floor(procs, work, "pg-floor", floor_provider, deliver=True, key=key)
        systems = {FLOOR: floor}
        for name, nodes, suffix, tree in _systems(work):
            _, provider = start_fake_provider(procs, work, f"pg-provider-{nodes}{suffix}", 0.0)
            systems[name] = start_pipecored(
                procs,
                work,
                f"pg-sustained-{nodes}{suffix}",
                provider,
                key=key,
                store=databases.enter_context(fresh_database(dsn)),
                nodes=nodes,
                timeout=sizes.phase_timeout,
                tree=tree,
            )

        def sustained_of(name: str) -> Callable[[], SustainedRun]:
            system = systems[name]
            return lambda: sustained_run(
                system,
                connections=conns,
                seconds=seconds,
                warmup=warm,
                timeout=sizes.phase_timeout,
            )

        sustained = alternate(sizes.rounds, [(name, sustained_of(name)) for name in systems])
    for name in ("1 node", "2 nodes"):
        sustained_rows(
            results, SECTION, sizes, sustained[name], sustained[FLOOR], targets=False,
            label=f", {name}",
        )  # fmt: skip
    if work.against is not None:
        rev = work.against[0]
        for name in ("1 node", "2 nodes"):
            label = f", PostgreSQL, {name}"
            accept_ab_row(results, label, rev, accepts[name], accepts[f"{name} at {rev}"])
            sustained_ab_rows(results, label, rev, sustained[name], sustained[f"{name} at {rev}"])


def _systems(work: Workdir) -> list[tuple[str, int, str, Path]]:
    """(name, nodes, process name suffix, tree) of each pipecored measured: one node and two,
    and with ``--against`` the same of the other tree, alternated with them."""
    systems = [("1 node", 1, "", ROOT), ("2 nodes", 2, "", ROOT)]
    if work.against is not None:
        rev, tree = work.against
        systems += [(f"{name} at {rev}", nodes, "-against", tree) for name, nodes, _, _ in systems]
    return systems
