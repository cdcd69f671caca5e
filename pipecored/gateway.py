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
from pipecored.config.registry import TenantRegistry
from pipecored.config.watcher import watch_config
from pipecored.delivery import DeliveryWorker
from pipecored.http import outbound_client
from pipecored.metrics import Metrics
from pipecored.provider import Provider
from pipecored.ratelimit import FailedAuthThrottle, KeyedLimits
from pipecored.service import Service
from pipecored.store import MessageStore, open_store

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

    def load(self) -> None:
        """Read the whole config dir; raises ConfigError when pipecored.yaml is invalid."""
        self.registry.load()

    async def start(self) -> None:
        daemon = self.registry.snapshot.daemon
        self._store = open_store(daemon.store, base_dir=str(self.config_dir))
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
            load_alert_receivers(), snapshot=lambda: self.registry.snapshot, metrics=self.metrics
        )
        self._worker.circuits.listeners.append(self._alerts.circuit_changed)
        self._alerts.start()
        self._worker.start()
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
        if self._http is not None:
            await self._http.aclose()
        if self._store is not None:
            await self._store.close()
        log.info("pipecored.stopped")
