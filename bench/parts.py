"""What each part of a message costs: CPU per message of the daemon's own ASGI app, in one process
without uvicorn or sockets, as shipped and with one part taken out, beside the floor's app (and,
accepting, the durable app) driven the same way.

    python -m bench.parts accept|end-to-end [--sends 20000] [--rounds 3] [--only VARIANT]

``accept``: the provider holds every call (as in the accept phase), so the API and the store
are all that runs. ``end-to-end``: the provider answers at once, and the window runs until it
has received every message sent in it (the floor delivering, as in the sustained phase).

Each variant runs in a child process of its own (so that what one takes out cannot leak into
another), alternately with the others, ``--rounds`` times. A child builds the app (pipecored's
on the benchmark's one-tenant config), runs its ASGI lifespan, warms it with ``--warm`` sends
(6,400), then has 32 concurrent callers send ``--sends`` messages through it and reads
``time.process_time()`` (every thread: the event loop, the SQLite writer, the readers) around
them. The parts a variant takes out:

- ``phone``: the SMS channel's address check (libphonenumber's parse and possibility check),
  replaced by one that takes any string.
- ``log``: the request's log line (``http.request``); ``logs``: that and the delivery's
  (``delivery.attempt``), neither rendered nor written.
- ``metrics``: the accepted-messages counter.
- ``store``: the store's accept, answered at once with nothing written.
- ``events``: the events a delivery emits (``message.sent``: built and stored in the outbox).

Each child checks that what it took out is out (no such log line written, no message stored,
no event stored) and that what it kept ran for every message, and that every send was answered
202; it fails otherwise. Not part of ``python -m bench``: it prints a table and asserts
nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import (
    HOST,
    SEND_BODY,
    Procs,
    Workdir,
    child_env,
    http_json,
    install_plugin,
    start_fake_provider,
    tenant_key,
    write_config,
)
from bench.phases import HOLD_SECONDS, _wait_delivered
from bench.systems import HELD_DELIVERY

CALLERS = 32
# variant: the parts it takes out (None: a baseline app instead of pipecored)
MODES: dict[str, dict[str, frozenset[str] | None]] = {
    "accept": {
        "pipecored": frozenset(),
        "no-phone": frozenset({"phone"}),
        "no-log": frozenset({"log"}),
        "no-metrics": frozenset({"metrics"}),
        "no-store": frozenset({"store"}),
        "none-of-4": frozenset({"phone", "log", "metrics", "store"}),
        "floor": None,
        "durable": None,
    },
    "end-to-end": {
        "pipecored": frozenset(),
        "no-phone": frozenset({"phone"}),
        "no-logs": frozenset({"logs"}),
        "no-events": frozenset({"events"}),
        "none-of-3": frozenset({"phone", "logs", "events"}),
        "floor": None,
    },
}

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def _lifespan(app: ASGIApp) -> Callable[[], Awaitable[None]]:
    """Start ``app``'s lifespan; returns what stops it."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the app did not start: {message}")

    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    )
    await asyncio.wait_for(started.wait(), 60)

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await task

    return stop


async def _delivered(provider: int, n: int) -> None:
    """Until the fake provider has received ``n`` messages since its reset."""
    stats = await asyncio.to_thread(_wait_delivered, provider, n, 300)
    if stats["count"] < n:
        raise RuntimeError(f"the provider received {stats['count']} of {n} messages in 300 s")


async def _drive(
    app: ASGIApp,
    sends: int,
    warm: int,
    provider: int | None,
    commits: Callable[[], int] | None = None,
) -> dict[str, float]:
    """Warm ``app``, then send ``sends`` messages through it; with ``provider`` (end to end),
    the window lasts until the provider has them all. ``commits``: the store's count of write
    transactions, read at both ends of the window."""
    body = json.dumps(SEND_BODY).encode()
    headers = [
        (b"host", HOST.encode()),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {tenant_key(0)}".encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    statuses: Counter[int] = Counter()

    async def one() -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/messaging/send/sms", "raw_path": b"/messaging/send/sms",
            "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080),
        }  # fmt: skip
        received = False

        async def receive() -> dict[str, Any]:
            nonlocal received
            if received:  # a disconnect is only asked for after the response: never here
                await asyncio.Event().wait()
            received = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] += 1

        await app(scope, receive, send)

    async def caller(n: int) -> None:
        for _ in range(n):
            await one()

    warm = warm // CALLERS * CALLERS
    await asyncio.gather(*(caller(warm // CALLERS) for _ in range(CALLERS)))
    if provider is not None:
        await _delivered(provider, warm)
        await asyncio.sleep(0.5)  # the warm-up's completes written
    statuses.clear()
    each = sends // CALLERS
    n = each * CALLERS
    committed = commits() if commits else 0
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller(each) for _ in range(CALLERS)))
    if provider is not None:
        await _delivered(provider, warm + n)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    committed = commits() - committed if commits else 0
    if provider is not None:
        await asyncio.sleep(0.5)  # the last completes written, before the counts are read
    if statuses != {202: n}:
        raise RuntimeError(f"expected {n} answers 202, got {dict(statuses)}")
    result = {"sends": n + warm, "measured": n, "cpu_us": 1e6 * cpu / n, "rate": n / wall}
    if commits:
        result["commits_per_message"] = committed / n
    return result


class _Log:
    """Stands for a module's structlog logger: counts each event's lines, and writes them
    unless its events are ``silenced``."""

    def __init__(self, real: Any, silenced: set[str], lines: Counter[str]) -> None:
        self.real, self.silenced, self.lines = real, silenced, lines

    def __getattr__(self, level: str) -> Callable[..., None]:
        def emit(event: str, *args: Any, **kwargs: Any) -> None:
            if event not in self.silenced:
                self.lines[event] += 1
                getattr(self.real, level)(event, *args, **kwargs)

        return emit


def _without(parts: frozenset[str], gateway: Any) -> Callable[[], dict[str, int]]:
    """Take ``parts`` out of the started gateway; returns what counts, after the sends,
    what was done (log lines written, messages accepted into the store)."""
    import pipecored.api.app as api_app
    import pipecored.channels as channels
    import pipecored.delivery as delivery
    import pipecored.store.sqlite as sqlite_store
    from pipecored.store.base import AcceptResult

    if "phone" in parts:
        object.__setattr__(channels.SMS, "check_address", str)
    lines: Counter[str] = Counter()
    silenced = set()
    if parts & {"log", "logs"}:
        silenced.add("http.request")
    if "logs" in parts:
        silenced.add("delivery.attempt")
    api_app.log = _Log(api_app.log, silenced, lines)  # type: ignore[assignment]
    delivery.log = _Log(delivery.log, silenced, lines)  # type: ignore[assignment]
    if "metrics" in parts:

        class _Uncounted:
            def labels(self, *args: Any) -> _Uncounted:
                return self

            def inc(self, amount: float = 1) -> None:
                pass

        gateway.metrics.messages_accepted = _Uncounted()
    if "events" in parts:
        sqlite_store.message_events = lambda *args, **kwargs: []  # type: ignore[assignment]
    accepted = Counter[str]()
    store = gateway.store
    if "store" in parts:
        seq = iter(range(1, 1 << 62))

        async def accept(message: Any, claim: Any = None) -> AcceptResult:
            return AcceptResult(message.record(next(seq)), replayed=False)

        store.accept = accept
    else:
        real_accept = store.accept

        async def counted(message: Any, claim: Any = None) -> AcceptResult:
            result: AcceptResult = await real_accept(message, claim)
            accepted["stored"] += 1
            return result

        store.accept = counted

    return lambda: {**lines, **accepted}


def _check(variant: str, parts: frozenset[str], done: dict[str, int], db: Path, n: int) -> None:
    """Each part taken out is out, and each kept did its work for all ``n`` messages."""
    expected = {
        "http.request": 0 if parts & {"log", "logs"} else n,
        "stored": 0 if "store" in parts else n,
    }
    if "logs" in parts or (db.exists() and _count(db, "SELECT count(*) FROM attempts")):
        expected["delivery.attempt"] = 0 if "logs" in parts else n
    for what, want in expected.items():
        got = done.get(what, 0)
        if (want == 0 and got) or got < want:
            raise RuntimeError(f"{variant}: {got} {what}, expected {want or 'none'}")
    if db.exists():
        events = _count(db, "SELECT count(*) FROM outbox_events")
        sent = _count(db, "SELECT count(*) FROM messages WHERE status = 'sent'")
        if "events" in parts and events:
            raise RuntimeError(f"{variant}: {events} events stored")
        if "events" not in parts and events < sent:
            raise RuntimeError(f"{variant}: {events} events for {sent} messages sent")


def _count(db: Path, sql: str) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        value: int = conn.execute(sql).fetchone()[0]
    return value


async def _child(args: argparse.Namespace) -> dict[str, Any]:
    from pipecored.cli import _settle_heap

    provider = args.provider if args.mode == "end-to-end" else None
    if provider is not None:
        await asyncio.to_thread(http_json, provider, "POST", "/reset")
    parts = MODES[args.mode][args.child]
    if parts is None:
        module = __import__(f"bench.{args.child}_app", fromlist=["app"])
        if args.child == "durable":
            _settle_heap()  # as the daemon does before it starts (the floor does it itself)
        stop = await _lifespan(module.app)
        try:
            return await _drive(module.app, args.sends, args.warm, provider)
        finally:
            await stop()
    from pipecored.api.app import create_app
    from pipecored.cli import _providers
    from pipecored.gateway import Gateway
    from pipecored.logs import configure_logging

    redactor = configure_logging(level="info", fmt="json")
    gateway = Gateway(Path(args.config), _providers())
    gateway.load()
    redactor.source = lambda: gateway.registry.snapshot.secrets
    app = create_app(gateway)
    _settle_heap()
    stop = await _lifespan(app)
    try:
        done = _without(parts, gateway)  # the gateway started: its store is open
        result = await _drive(app, args.sends, args.warm, provider, lambda: gateway.store.commits)
    finally:
        await stop()
    _check(args.child, parts, done(), Path(args.db), int(result["sends"]))
    return result


def _run_child(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()  # the daemon's loop
    except ImportError:
        pass
    result = asyncio.run(_child(args))
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.parts", description=__doc__)
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--warm", type=int, default=6_400, help="sends to warm up each child")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write every round's results here")
    parser.add_argument("--only", action="append", help="this variant only (repeatable)")
    for hidden in ("--child", "--config", "--out", "--db"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--provider", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _run_child(args)
        return
    variants = args.only or list(MODES[args.mode])
    unknown = set(variants) - set(MODES[args.mode])
    if unknown:
        parser.error(f"{args.mode} has no variant {sorted(unknown)}: {list(MODES[args.mode])}")
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="bench-parts-") as tmp:
        path = Path(tmp)
        work = Workdir(path, install_plugin(path / "plugin-site"))
        work.logs.mkdir()
        # stdout buffered, as the daemon's is under the benchmark (PYTHONUNBUFFERED unset)
        env = {k: v for k, v in child_env(work.plugin_site).items() if k != "PYTHONUNBUFFERED"}
        held = args.mode == "accept"
        with Procs(work.logs) as procs:
            _, provider = start_fake_provider(
                procs, work, "provider", HOLD_SECONDS if held else 0.0
            )
            for round_ in range(args.rounds):
                for variant in variants:
                    result = _one(args, work, env, variant, round_, provider, held)
                    results[variant].append(result)
                    commits = result.get("commits_per_message")
                    print(
                        f"round {round_ + 1} {variant:>10}: {result['cpu_us']:6.1f} µs CPU per"
                        f" message, {result['rate']:7,.0f}/s"
                        + (f", {commits:.3f} write transactions per message" if commits else ""),
                        flush=True,
                    )
    _table(args.mode, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


def _one(
    args: argparse.Namespace,
    work: Workdir,
    env: dict[str, str],
    variant: str,
    round_: int,
    provider: int,
    held: bool,
) -> dict[str, float]:
    folder = work.fresh(f"{variant}-{round_}")
    out, db = folder / "result.json", folder / "pipecored.db"
    argv = [sys.executable, "-m", "bench.parts", args.mode, f"--child={variant}"]
    argv += ["--sends", str(args.sends), "--warm", str(args.warm), "--out", str(out)]
    argv += ["--provider", str(provider)]
    argv += ["--db", str(db)]
    child = dict(env)
    if MODES[args.mode][variant] is None:
        child["BENCH_DB"] = str(folder / f"{variant}.db")
        if not held:
            child["BENCH_PROVIDER"] = f"http://{HOST}:{provider}"
    else:
        config = write_config(
            folder / "config",
            db=db,
            provider_url=f"http://{HOST}:{provider}",
            tenants=1,
            delivery=HELD_DELIVERY if held else None,
        )
        argv += ["--config", str(config)]
    with (folder / "child.log").open("wb") as log:
        subprocess.run(argv, env=child, stdout=subprocess.DEVNULL, stderr=log, check=False)
    if not out.exists():
        tail = (folder / "child.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{variant} failed:\n{tail}")
    result: dict[str, float] = json.loads(out.read_text(encoding="utf-8"))
    return result


def _table(mode: str, results: dict[str, list[dict[str, float]]]) -> None:
    ours = results.get("pipecored")
    base = statistics.median(r["cpu_us"] for r in ours) if ours else None
    print(f"\n{mode}:\n\n| variant | CPU per message, each round | median | against pipecored |")
    print("|---|---|---|---|")
    for variant, runs in results.items():
        values = [r["cpu_us"] for r in runs]
        median = statistics.median(values)
        delta = f"{median - base:+.0f} µs" if base is not None and variant != "pipecored" else ""
        rounds = " / ".join(f"{v:.0f}" for v in values)
        print(f"| {variant} | {rounds} µs | {median:.0f} µs | {delta} |")


if __name__ == "__main__":
    os.environ.pop("PYTHONUNBUFFERED", None)
    main()
