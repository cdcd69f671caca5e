"""The alert host: turns circuit changes into alerts and gets them to every receiver.

A (tenant, channel, provider) circuit that opens fires ``PipecoreProviderDown``; its closing
resolves it. Circuit listeners are called synchronously from the middle of a delivery, so
:meth:`AlertDispatcher.circuit_changed` only records the alert and enqueues it. Each receiver has a
queue of its own and one background task that sends in order (a resolve never overtakes its
firing), retrying a receiver that is down with bounded backoff; one receiver that is down delays
neither delivery nor the other receivers.

Receivers are plugins: ``register_alert_receivers(register)`` hands over
``pipecored.AlertReceiver`` objects (the built-in ones come from
:mod:`pipecored.alerts.receivers` through the same entry-point group), and the host calls
``await receiver.send(alert, ctx)``. The ``pipecored.AlertContext`` is built again for every
attempt from the live ``pipecored.yaml`` (its ``alerts`` section and the receiver's own
``plugins.<name>`` entry), so a reload applies to the next alert.

Delivery to receivers is at least once: a retried webhook batch goes again to every configured
URL, and Alertmanager gets firing alerts re-sent every ``resend_interval`` while they last.

Several daemons sharing a PostgreSQL store each see a provider fail and open their own circuit.
Alertmanager deduplicates what they send by labels; a receiver without ``repeat`` (the webhook
receiver, most plugins) would get one copy per node, so the dispatcher is given the store's
``claim_once`` and sends only the first node's firing, and the first node's resolution, of a
(receiver, tenant, channel, provider) within :data:`CLUSTER_DEDUP_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal, Protocol

import httpx
import pluggy
import structlog

from pipecored.alert_receiver import Alert, AlertContext, AlertReceiver, Severity
from pipecored.circuit import CircuitChange, CircuitKey
from pipecored.config.registry import ConfigSnapshot
from pipecored.errors import AlertSendError, PipecoreError
from pipecored.http import outbound_client
from pipecored.metrics import Metrics
from pipecored.plugins import distribution_of, get_plugin_manager
from pipecored.policy import backoff_delay
from pipecored.provider_calls import scrub_secrets

log = structlog.get_logger("pipecored.alerts")

# Alertmanager forgets a firing alert it has not heard of within its resolve_timeout (5 min by
# default); Prometheus re-sends every minute, and so do we.
RESEND_INTERVAL = 60.0
QUEUE_LIMIT = 1000  # per receiver; beyond it an alert is dropped and counted as failed
STOP_GRACE = 5.0  # how long stop() lets queued alerts (the shutdown resolves) go out
# Within this, the same notification from another node of a cluster is not sent again.
CLUSTER_DEDUP_SECONDS = 300.0

AlertResult = Literal["sent", "failed", "retried", "deduplicated"]


class Claim(Protocol):
    """The store's ``claim_once``, for a cluster: whether this node is the first for ``key``."""

    def __call__(self, key: str, *, until: float, now: float) -> Awaitable[bool]: ...


def collect_alert_receivers(pm: pluggy.PluginManager) -> tuple[AlertReceiver, ...]:
    """Every receiver the plugins register, by name; a bad registration names its
    distribution."""
    registered_by: dict[str, str] = {}
    found: list[AlertReceiver] = []
    for plugin in pm.get_plugins():
        impl = getattr(plugin, "register_alert_receivers", None)
        if impl is None:
            continue
        registered: list[AlertReceiver] = []
        impl(register=registered.append)
        distribution = distribution_of(pm, plugin)
        for receiver in registered:
            if not isinstance(receiver, AlertReceiver) or not receiver.name:
                raise PipecoreError(
                    f"{distribution} registered {receiver!r}, which is not a named "
                    "pipecored.AlertReceiver"
                )
            if receiver.name in registered_by:
                # Sorted: pluggy hands plugins over in no fixed order.
                first, second = sorted((registered_by[receiver.name], distribution))
                raise PipecoreError(
                    f"alert receiver name {receiver.name!r} is registered by both "
                    f"{first} and {second}"
                )
            registered_by[receiver.name] = distribution
            found.append(receiver)
    return tuple(sorted(found, key=lambda r: r.name))


def load_alert_receivers() -> tuple[AlertReceiver, ...]:
    return collect_alert_receivers(get_plugin_manager())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5  # per alert and receiver, the first one included
    initial: float = 1.0  # backoff ceiling after the first failure, doubling up to ``maximum``
    maximum: float = 30.0
    timeout: float = 10.0  # one send() call, so that a hung receiver cannot wedge its queue


@dataclass(slots=True)
class _Lane:
    receiver: AlertReceiver
    queue: asyncio.Queue[Alert] = field(default_factory=lambda: asyncio.Queue(maxsize=QUEUE_LIMIT))
    queued_firing: Counter[CircuitKey] = field(default_factory=Counter)
    task: asyncio.Task[None] | None = None


class AlertDispatcher:
    """Turns circuit changes into alerts and gets them to every receiver, off the delivery
    path."""

    def __init__(
        self,
        receivers: Sequence[AlertReceiver],
        *,
        snapshot: Callable[[], ConfigSnapshot],
        metrics: Metrics,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy = RetryPolicy(),
        resend_interval: float = RESEND_INTERVAL,
        rng: Callable[[float, float], float] = random.uniform,
        claim: Claim | None = None,
    ) -> None:
        self._lanes = [_Lane(r) for r in receivers]
        self._snapshot = snapshot
        self._metrics = metrics
        self._http = http
        self._own_http = http is None
        self.retry = retry
        self.resend_interval = resend_interval
        self._rng = rng
        self._claim = claim
        self._firing: dict[CircuitKey, Alert] = {}
        self._resend_task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def firing(self) -> Mapping[CircuitKey, Alert]:
        return self._firing

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._http is None:
            self._http = outbound_client(max_connections=16, timeout=self.retry.timeout)
        for lane in self._lanes:
            lane.task = asyncio.create_task(self._run(lane), name=f"alerts-{lane.receiver.name}")
        self._resend_task = asyncio.create_task(self._resend_loop(), name="alerts-resend")

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Resolve what is firing (circuits live in memory: after a restart they start closed, and
        an outage still going on fires again), give the queues ``grace`` seconds, then stop."""
        if self._stopped:
            return
        self._stopped = True
        if self._resend_task is not None:
            self._resend_task.cancel()
        for key in list(self._firing):
            self._resolve(key, "pipecored stopped", time.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), grace)
        tasks = [t for t in (self._resend_task, *(lane.task for lane in self._lanes)) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._own_http and self._http is not None:
            await self._http.aclose()

    async def flush(self) -> None:
        """Wait until every queued alert has been sent or given up on."""
        await asyncio.gather(*(lane.queue.join() for lane in self._lanes))

    # -- the circuit listener (synchronous, on the delivery path: enqueue only) ------------------

    def circuit_changed(self, change: CircuitChange) -> None:
        key = (change.tenant, change.channel, change.provider)
        if change.state == "open":
            alert = Alert(
                "firing",
                *key,
                severity=self._severity(key),
                # Already scrubbed of the route's credentials by delivery; alerts leave the
                # daemon, so every secret it knows is masked once more.
                reason=scrub_secrets(change.reason, self._snapshot().secrets),
                starts_at=change.opened_at,
            )
            self._firing[key] = alert
            self._enqueue(alert)
        else:
            self._resolve(key, change.reason, change.at)

    def _resolve(self, key: CircuitKey, resolution: str, at: float) -> None:
        firing = self._firing.pop(key, None)
        if firing is None:
            return  # nothing was raised for it (or it was already resolved by a sweep)
        self._enqueue(replace(firing, status="resolved", ends_at=at, resolution=resolution))

    def _severity(self, key: CircuitKey) -> Severity:
        """``critical`` when no other route of the channel is up (it has no fallback, or every
        fallback's circuit is open too), else ``warning``; fixed for the outage."""
        tenant_id, channel_name, provider = key
        tenant = self._snapshot().tenant(tenant_id)
        channel = next(
            (c for name, c in (tenant.channels.items() if tenant else ()) if name == channel_name),
            None,
        )
        if channel is None:
            return "critical"
        others = {route.provider for route in channel.routes} - {provider}
        alive = [p for p in others if (tenant_id, channel_name, p) not in self._firing]
        return "warning" if alive else "critical"

    def _enqueue(self, alert: Alert, lanes: Sequence[_Lane] | None = None) -> None:
        for lane in self._lanes if lanes is None else lanes:
            try:
                lane.queue.put_nowait(alert)
            except asyncio.QueueFull:
                self._count(lane.receiver, "failed")
                log.error("alert.dropped", receiver=lane.receiver.name, reason="queue full")
                continue
            if alert.status == "firing":
                lane.queued_firing[alert.key] += 1

    # -- background tasks ------------------------------------------------------------------------

    async def _run(self, lane: _Lane) -> None:
        while True:
            alert = await lane.queue.get()
            try:
                await self._deliver(lane.receiver, alert)
            finally:
                if alert.status == "firing":
                    lane.queued_firing[alert.key] -= 1
                    if lane.queued_firing[alert.key] <= 0:
                        del lane.queued_firing[alert.key]
                lane.queue.task_done()

    def _context(self, receiver: AlertReceiver) -> AlertContext:
        """The live settings, read again for every attempt: a reload applies to the next one."""
        assert self._http is not None
        daemon = self._snapshot().daemon
        settings = MappingProxyType(daemon.plugins.get(receiver.name, {}))
        return AlertContext(daemon.alerts, self._http, self.resend_interval, settings)

    async def _first_in_cluster(self, receiver: AlertReceiver, alert: Alert) -> bool:
        """Whether this node is the one to send this notification (always, alone)."""
        if self._claim is None or receiver.repeat:
            return True
        key = "|".join(("alert", receiver.name, alert.status, *alert.key))
        now = time.time()
        try:
            return await self._claim(key, until=now + CLUSTER_DEDUP_SECONDS, now=now)
        except Exception:  # the store is down: a duplicate beats a lost alert
            log.warning("alert.dedup_unavailable", receiver=receiver.name)
            return True

    async def _deliver(self, receiver: AlertReceiver, alert: Alert) -> None:
        policy = self.retry
        if not await self._first_in_cluster(receiver, alert):
            self._count(receiver, "deduplicated")
            return
        for attempt in range(1, policy.attempts + 1):
            ctx = self._context(receiver)
            try:
                # Inside the try: a plugin's enabled() that raises fails this alert, not the
                # receiver's queue task.
                if not receiver.enabled(ctx):
                    return
                await asyncio.wait_for(receiver.send(alert, ctx), policy.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc.message if isinstance(exc, AlertSendError) else type(exc).__name__
                if isinstance(exc, TimeoutError):
                    error = f"no answer within {policy.timeout:g} s"
                retryable = not isinstance(exc, AlertSendError) or exc.retryable
                if retryable and attempt < policy.attempts:
                    delay = backoff_delay(
                        attempt, initial=policy.initial, maximum=policy.maximum, rng=self._rng
                    )
                    self._count(receiver, "retried")
                    log.warning(
                        "alert.retrying",
                        receiver=receiver.name,
                        status=alert.status,
                        tenant=alert.tenant,
                        channel=alert.channel,
                        provider=alert.provider,
                        attempt=attempt,
                        delay_seconds=round(delay, 3),
                        error=error,
                    )
                    await asyncio.sleep(delay)
                    continue
                self._count(receiver, "failed")
                log.error(
                    "alert.failed",
                    receiver=receiver.name,
                    status=alert.status,
                    tenant=alert.tenant,
                    channel=alert.channel,
                    provider=alert.provider,
                    attempts=attempt,
                    error=error,
                )
                return
            self._count(receiver, "sent")
            log.info(
                "alert.sent",
                receiver=receiver.name,
                status=alert.status,
                tenant=alert.tenant,
                channel=alert.channel,
                provider=alert.provider,
            )
            return

    async def _resend_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resend_interval)
            self._sweep()
            repeating = [lane for lane in self._lanes if lane.receiver.repeat]
            for key, alert in list(self._firing.items()):
                # A receiver still working through this alert (it is down) needs no second copy.
                self._enqueue(alert, [lane for lane in repeating if not lane.queued_firing[key]])

    def _sweep(self) -> None:
        """Resolve alerts whose tenant, channel or route is gone from the configuration: their
        circuits get no more traffic, so nothing else would ever close them."""
        snapshot = self._snapshot()
        for key in list(self._firing):
            tenant_id, channel_name, provider = key
            tenant = snapshot.tenant(tenant_id)
            routes = {
                route.provider
                for name, channel in (tenant.channels.items() if tenant else ())
                if name == channel_name
                for route in channel.routes
            }
            if provider not in routes:
                self._resolve(key, "no longer configured", time.time())

    def _count(self, receiver: AlertReceiver, result: AlertResult) -> None:
        self._metrics.alerts.labels(receiver.name, result).inc()
