"""The daemon's parts, wired together, with their start and stop order.

Start: configuration (already loaded), store, outbound HTTP client, delivery worker, config
watcher. Stop: refuse new sends, stop the watcher, let in-flight provider calls finish within
``server.shutdownGrace``, give unfinished ones back to the queue, close the client and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path

import httpx
import structlog
from prometheus_client import CollectorRegistry

from pipecored.alerts.dispatcher import AlertDispatcher, load_alert_receivers
from pipecored.channels import ChannelSet
from pipecored.circuit import CircuitChange
from pipecored.config.registry import TenantRegistry
from pipecored.config.watcher import watch_config
from pipecored.delivery import DeliveryWorker
from pipecored.errors import StoreError
from pipecored.events.kinds import PROVIDER_DOWN, PROVIDER_UP
from pipecored.events.retry import ATTEMPT_TIMEOUT_SECONDS
from pipecored.events.source import TenantEvents
from pipecored.events.worker import MAX_IN_FLIGHT, EventWorker
from pipecored.http import outbound_client
from pipecored.metrics import Metrics
from pipecored.provider import Provider
from pipecored.ratelimit import FailedAuthThrottle, KeyedLimits
from pipecored.service import Service
from pipecored.store import MessageStore, NewEvent, open_store

log = structlog.get_logger("pipecored")


class Gateway:
    def __init__(
        self,
        config_dir: Path,
        providers: Mapping[str, Provider],
        *,
        env: Mapping[str, str] | None = None,
        metrics_registry: CollectorRegistry | None = None,
        watch: bool = True,
    ) -> None:
        self.config_dir = config_dir
        self.providers = providers
        self.channels = ChannelSet.of(providers)
        for warning in self.channels.warnings:
            log.warning("plugins.undeclared_channel", warning=warning)
        self.service = Service(self)
        self.registry = TenantRegistry(config_dir, providers, env=env)
        self.metrics = Metrics(metrics_registry)
        self.registry.listeners.append(self._reloaded)
        self.registry.removed_listeners.append(self.metrics.forget_tenant)
        self.watch = watch
        self.accepting = False
        self.config_lock = asyncio.Lock()
        self.api_limits = KeyedLimits()
        self.auth_failures = FailedAuthThrottle()
        self.registry.removed_listeners.append(self.api_limits.forget)
        self._store: MessageStore | None = None
        self._http: httpx.AsyncClient | None = None
        self._worker: DeliveryWorker | None = None
        self._alerts: AlertDispatcher | None = None
        self._events_http: httpx.AsyncClient | None = None
        self._event_worker: EventWorker | None = None
        self._event_writes: set[asyncio.Task[None]] = set()
        self._watch_stop = asyncio.Event()
        self._watch_task: asyncio.Task[None] | None = None

    def _reloaded(self, success: bool) -> None:
        self.metrics.config_reloaded(success, self.registry.last_success or 0.0)
        if success and self._worker is not None:
            self._worker.prune()

    @property
    def store(self) -> MessageStore:
        assert self._store is not None, "gateway not started"
        return self._store

    @property
    def http(self) -> httpx.AsyncClient:
        """The outbound client every provider call goes through (see :mod:`pipecored.http`)."""
        assert self._http is not None, "gateway not started"
        return self._http

    @property
    def worker(self) -> DeliveryWorker:
        assert self._worker is not None, "gateway not started"
        return self._worker

    @property
    def event_worker(self) -> EventWorker:
        assert self._event_worker is not None, "gateway not started"
        return self._event_worker

    def load(self) -> None:
        """Read the whole config dir; raises ConfigError when pipecored.yaml is invalid."""
        self.registry.load()

    async def start(self) -> None:
        daemon = self.registry.snapshot.daemon
        self._store = open_store(
            daemon.store,
            base_dir=str(self.config_dir),
            pool_min=daemon.store_pool.min_size,
            pool_max=daemon.store_pool.max_size,
            retention=daemon.store_retention,
        )
        events = TenantEvents(lambda: self.registry.snapshot)
        self._store.events = events
        await self._store.open()
        if self._store.taken_back:
            log.info("store.leases_taken_back", count=self._store.taken_back)
        self._http = outbound_client(
            max_connections=daemon.delivery.concurrency, timeout=daemon.delivery.timeout
        )
        self._worker = DeliveryWorker(
            store=self._store,
            registry=self.registry,
            providers=self.providers,
            http=self._http,
            metrics=self.metrics,
        )
        self.registry.removed_listeners.append(self._worker.forget_tenant)
        self._alerts = AlertDispatcher(
            load_alert_receivers(),
            snapshot=lambda: self.registry.snapshot,
            metrics=self.metrics,
            claim=self._store.claim_once if self._store.shared else None,
        )
        self._worker.circuits.listeners.append(self._alerts.circuit_changed)
        # Events to the tenants' platforms: their own client (a slow endpoint never holds a
        # connection a provider call needs) and loop.
        self._events_http = outbound_client(
            max_connections=MAX_IN_FLIGHT, timeout=ATTEMPT_TIMEOUT_SECONDS
        )
        self._event_worker = EventWorker(
            store=self._store,
            snapshot=lambda: self.registry.snapshot,
            http=self._events_http,
            metrics=self.metrics,
        )
        events.listeners.append(self._event_worker.wake_threadsafe(asyncio.get_running_loop()))
        # Several daemons on one database: another node's accept or event wakes this one's
        # workers (PostgreSQL's LISTEN/NOTIFY).
        self._store.on_work(self._worker.wake)
        self._store.on_work(self._event_worker.wake)
        self._worker.circuits.listeners.append(self._circuit_event)
        self._alerts.start()
        self._worker.start()
        self._event_worker.start()
        if self.watch:
            self._watch_task = asyncio.create_task(
                watch_config(self.registry, self._watch_stop), name="config-watcher"
            )
        self.accepting = True
        log.info(
            "pipecored.started",
            tenants=len(self.registry.snapshot.tenants),
            providers=sorted(self.providers),
        )

    async def stop(self) -> None:
        self.accepting = False
        self._watch_stop.set()
        if self._watch_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        if self._worker is not None:
            await self._worker.stop(self.registry.snapshot.daemon.server.shutdown_grace)
        if self._alerts is not None:
            await self._alerts.stop()
        if self._event_writes:
            await asyncio.gather(*self._event_writes, return_exceptions=True)
        if self._event_worker is not None:
            await self._event_worker.stop(self.registry.snapshot.daemon.server.shutdown_grace)
        if self._events_http is not None:
            await self._events_http.aclose()
        if self._http is not None:
            await self._http.aclose()
        if self._store is not None:
            await self._store.close()
        log.info("pipecored.stopped")

    def _circuit_event(self, change: CircuitChange) -> None:
        """``provider.down`` / ``provider.up`` for the tenant whose circuit it is: stored (and
        so posted) like every event, in a write of its own since no stored change causes it."""
        store, events = self._store, self._store.events if self._store else None
        if store is None or events is None:
            return
        event_type = PROVIDER_UP if change.state == "closed" else PROVIDER_DOWN
        data = {"channel": change.channel, "provider": change.provider, "reason": change.reason}
        event = events.tenant_event(change.tenant, event_type, data, now=change.at)
        if event is None:
            return
        task = asyncio.get_running_loop().create_task(self._write_event(store, event))
        self._event_writes.add(task)
        task.add_done_callback(self._event_writes.discard)

    @staticmethod
    async def _write_event(store: MessageStore, event: NewEvent) -> None:
        try:
            await store.add_event(event)
        except StoreError as exc:
            log.warning(
                "events.not_stored", type=event.type, tenant=event.tenant_id, error=str(exc)
            )
