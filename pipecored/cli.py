"""``pipecored serve | check | plugins | keys new``, and how ``serve`` runs the API: the listening
sockets, uvicorn, the drain on a stop signal, and the bounds on idle connections."""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import os
import resource
import secrets
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final

import structlog
import uvicorn

from pipecored import __version__
from pipecored.channels import ChannelSet
from pipecored.config.loader import check_config_dir, config_warnings, load_daemon_config
from pipecored.errors import ConfigError, PipecoreError
from pipecored.gateway import Gateway
from pipecored.logs import configure_logging
from pipecored.plugins import LoadedProviders, load_providers
from pipecored.store import migrate_store

KEY_PREFIX = "pck_"  # recognisable in a leaked-secret scan

# A connection with no request in progress for this long is closed: idle keep-alive connections
# (uvicorn's own timer) and connections that never finish sending a request (ours). Each holds a
# file descriptor; left open, a thousand of them starve the process.
IDLE_TIMEOUT: Final = 5
# Descriptors kept for what is not an API connection: the store's files, the config watcher,
# the logs, the event loop's own. The outbound pool is counted on top (delivery.concurrency).
RESERVED_FDS: Final = 64
# the fewest API connections served, whatever the descriptor limit leaves
MIN_CONNECTIONS: Final = 32
LISTEN_BACKLOG: Final = 2048  # uvicorn's default

log = structlog.get_logger("pipecored")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipecored", description="Multi-tenant messaging gateway: WhatsApp, email and SMS."
    )
    parser.add_argument("--version", action="version", version=f"pipecored {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the daemon")
    serve.add_argument("--config", type=Path, default=Path("config"), help="config dir")
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides server.port)")

    check = commands.add_parser("check", help="validate a config dir")
    check.add_argument("--config", type=Path, default=Path("config"), help="config dir")

    commands.add_parser("plugins", help="list the loaded providers")

    migrate = commands.add_parser(
        "migrate",
        help="bring the store's schema up to date",
        description="Apply the store's schema migrations (SQLite or PostgreSQL, as pipecored.yaml's"
        " store says). A daemon also does this when it starts, under the same lock; run it"
        " before an upgrade's rolling restart to see it done once.",
    )
    migrate.add_argument("--config", type=Path, default=Path("config"), help="config dir")

    keys = commands.add_parser("keys", help="API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    new_key = key_commands.add_parser(
        "new",
        help="print a fresh random key and its hash (--tenant ID or --admin)",
        description="Print a fresh random key and the sha256: form to write in the config. Say "
        "whom it is for: --tenant ID (acts only as that tenant; for its apiKeys) or --admin (acts "
        "as any tenant and may change configuration; for auth.adminKeys).",
    )
    holder = new_key.add_mutually_exclusive_group(required=True)
    holder.add_argument("--tenant", metavar="ID", help="a key for tenants/ID.yaml's apiKeys")
    holder.add_argument(
        "--admin", action="store_true", help="an admin key, for auth.adminKeys in pipecored.yaml"
    )
    return parser


def _providers() -> LoadedProviders:
    try:
        return load_providers()
    except PipecoreError as exc:
        print(f"pipecored: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_check(config_dir: Path) -> int:
    providers = _providers()
    issues = check_config_dir(config_dir, providers=providers, env=os.environ)
    for issue in issues:
        print(issue)
    if config_dir.is_dir():
        # warnings do not fail the check: the files are valid as they are
        for warning in config_warnings(config_dir, providers=providers, env=os.environ):
            print(warning)
    if not issues:
        print(f"{config_dir}: ok")
    return 1 if issues else 0


def cmd_plugins() -> int:
    providers = _providers()
    rows = [
        (name, ",".join(sorted(p.channels)), providers.distribution(name))
        for name, p in providers.items()
    ]
    widths = [
        max(len(r[i]) for r in [("PROVIDER", "CHANNELS", "DISTRIBUTION"), *rows]) for i in range(3)
    ]
    for row in [("PROVIDER", "CHANNELS", "DISTRIBUTION"), *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    for warning in ChannelSet.of(providers).warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


class _Server(uvicorn.Server):
    """uvicorn's server, with pipecored's stop and its bounds on idle connections.

    Stop (SIGTERM, SIGINT): new sends are refused with ``503 shutting_down`` and ``/readyz``
    answers 503 at once, so that a load balancer moves on, while the listener stays open and the
    provider calls in flight finish (within ``server.shutdownGrace``). Only then does uvicorn's
    own shutdown close the listener, and the lifespan stop the gateway. A second signal stops
    without waiting, as in uvicorn.

    Connections: one with no request in progress for :data:`IDLE_TIMEOUT` is closed, and above
    ``connection_limit`` the longest idle ones are closed at once, so that idle sockets cannot use
    up the process's file descriptors.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        gateway: Gateway,
        *,
        shutdown_grace: float,
        connection_limit: int,
    ) -> None:
        super().__init__(config)
        self.gateway = gateway
        self.shutdown_grace = shutdown_grace
        self.connection_limit = connection_limit
        self._stop_requested = False
        self._drain: asyncio.Task[None] | None = None
        self._idle_since: dict[object, float] = {}

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # a signal handler: it sets flags, the main loop's next tick acts on them
        if self._stop_requested:
            super().handle_exit(sig, frame)
            return
        self._stop_requested = True
        self.gateway.accepting = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            for sock in sockets or ():
                log.info("pipecored.listening", url=_url(sock.getsockname()))

    async def on_tick(self, counter: int) -> bool:
        if self._stop_requested:
            # again: a signal during start-up came before the gateway's start() ended
            self.gateway.accepting = False
            if self._drain is None:
                self._drain = asyncio.create_task(self._drain_deliveries(), name="drain")
            elif self._drain.done():
                self.should_exit = True
        self._close_idle_connections()
        return await super().on_tick(counter)

    async def _drain_deliveries(self) -> None:
        log.info("pipecored.stopping", grace_seconds=self.shutdown_grace)
        await self.gateway.worker.stop(self.shutdown_grace)

    def _close_idle_connections(self) -> None:
        now = time.monotonic()
        idle_since: dict[object, float] = {}
        for connection in self.server_state.connections:
            cycle = getattr(connection, "cycle", None)
            if cycle is None or cycle.response_complete:
                idle_since[connection] = self._idle_since.get(connection, now)
        self._idle_since = idle_since
        excess = len(self.server_state.connections) - self.connection_limit
        for idle, since in sorted(idle_since.items(), key=lambda item: item[1]):
            if excess <= 0 and now - since < IDLE_TIMEOUT:
                break
            transport: Any = getattr(idle, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.close()
            excess -= 1


def _url(address: Any) -> str:
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _listen(host: str, port: int) -> list[socket.socket]:
    """The API's listening sockets, bound before anything else starts: a port that is taken
    stops the daemon with one line, before the store is opened or ``pipecored.started`` said."""
    addresses = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _raise_open_file_limit() -> int:
    """Lift the soft descriptor limit to the hard one (many systems start services at 1,024,
    which a few hundred clients and the outbound pool use up); returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses an unlimited RLIMIT_NOFILE: it is capped by fs.nr_open
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("pipecored.open_file_limit_kept", limit=soft)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def _connection_limit(open_files: int, outbound: int) -> int:
    return max(MIN_CONNECTIONS, open_files - outbound - RESERVED_FDS)


def cmd_serve(config_dir: Path, host: str | None, port: int | None) -> int:
    from pipecored.api.app import create_app

    if not config_dir.is_dir():
        # without this, a file or a typo would start a daemon on the defaults, storing its
        # database under a path built from the bad argument
        print(f"{config_dir}: (root): not a directory", file=sys.stderr)
        return 1
    try:
        daemon = load_daemon_config(config_dir, env=os.environ)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    redactor = configure_logging(level=daemon.logging.level, fmt=daemon.logging.format)
    gateway = Gateway(config_dir, _providers())
    try:
        gateway.load()
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    redactor.source = lambda: gateway.registry.snapshot.secrets
    daemon = gateway.registry.snapshot.daemon
    server = daemon.server
    host = host or server.host
    port = server.port if port is None else port
    connection_limit = _connection_limit(_raise_open_file_limit(), daemon.delivery.concurrency)
    try:
        sockets = _listen(host, port)
    except OSError as exc:
        log.error("pipecored.listen_failed", host=host, port=port, error=exc.strerror or str(exc))
        return 1
    config = uvicorn.Config(
        create_app(gateway),
        log_config=None,
        access_log=False,
        lifespan="on",
        ws="none",
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=IDLE_TIMEOUT,
        # over it uvicorn answers 503, until idle connections are closed (see _Server)
        limit_concurrency=connection_limit,
        # uvicorn's grace bounds the open HTTP requests, after the delivery drain (see _Server)
        timeout_graceful_shutdown=int(server.shutdown_grace) or 1,
    )
    uvicorn_server = _Server(
        config, gateway, shutdown_grace=server.shutdown_grace, connection_limit=connection_limit
    )
    # uvicorn re-raises a stop signal once its graceful shutdown is done, so that the process
    # dies by it; the contract is exit status 0 after a clean stop, so the re-raised signal
    # lands on a handler that does nothing.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    _settle_heap()
    try:
        uvicorn_server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
    return 0 if uvicorn_server.started else 1


def _settle_heap() -> None:
    """Keep the cyclic garbage collector off what start-up built.

    The configuration, the plugins and the imported modules live as long as the daemon; left in
    the collector's generations, every full collection walks all of them again, a pause of tens
    of milliseconds under load (accept p99 85 ms with it, 36 ms after ``gc.freeze()``). Freezing
    after a collection moves them out of the collector's sight; the larger first threshold makes
    the young collections, which each request's garbage triggers, ten times rarer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


def cmd_keys_new(tenant: str | None) -> int:
    """A key with 256 bits of randomness; the file gets its SHA-256, so it never holds the key.
    ``tenant`` None is an admin key (``--admin``: never the silent default)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    digest = "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()
    if tenant is None:
        who, where = "an admin key: it acts as any tenant", "auth.adminKeys in pipecored.yaml"
    else:
        who, where = f"a key for tenant {tenant}", f"apiKeys in tenants/{tenant}.yaml"
    print(f"key:     {key}")
    print(f"hashed:  {digest}")
    print(f"This is {who}. Give the key to its user (it is not stored anywhere);")
    print(f"add the hashed form to {where}:")
    print(f'  - "{digest}"')
    return 0


def cmd_migrate(config_dir: Path) -> int:
    try:
        daemon = load_daemon_config(config_dir, env=os.environ)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    try:
        before, after = asyncio.run(migrate_store(daemon.store, base_dir=str(config_dir)))
    except PipecoreError as exc:
        print(f"pipecored: {exc}", file=sys.stderr)
        return 1
    if before == after:
        print(f"store schema is up to date (version {after})")
    else:
        print(f"store schema migrated from version {before} to {after}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "migrate":
        return cmd_migrate(args.config)
    if args.command == "serve":
        return cmd_serve(args.config, args.host, args.port)
    if args.command == "check":
        return cmd_check(args.config)
    if args.command == "keys":
        return cmd_keys_new(None if args.admin else args.tenant)
    return cmd_plugins()


if __name__ == "__main__":
    raise SystemExit(main())
