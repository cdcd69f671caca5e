"""The outbox worker: posts stored events to the tenants' endpoints (SPEC section 8).

It claims due deliveries from the store (a claim is a lease: a worker that dies mid-post leaves
the delivery due again, so every event arrives at least once), signs each with its endpoint's
secret as the configuration has it now, posts it, and records the result: delivered on a 2xx,
otherwise due again on the retry schedule (:mod:`pipecored.events.retry`) until it is spent.

An endpoint is not claimed for while it has :data:`PER_ENDPOINT` posts in flight, and a claim
takes at most that many of one endpoint (so it never has more than twice that in flight); the
worker has at most :data:`MAX_IN_FLIGHT`. A slow or dead endpoint holds only its own slots,
never message delivery (its own loop and HTTP client) or another endpoint's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog

from pipecored.config.registry import ConfigSnapshot
from pipecored.errors import StoreError
from pipecored.events.envelope import signed_headers
from pipecored.events.retry import ATTEMPT_TIMEOUT_SECONDS, delivery_succeeded, next_attempt_at
from pipecored.metrics import Metrics
from pipecored.store.base import DeliveryResult, EventDelivery, MessageStore
from pipecored.tasks import StopSignal, cancel_and_wait

log = structlog.get_logger("pipecored.events")

PER_ENDPOINT = 4
MAX_IN_FLIGHT = 64
# A claimed delivery is due again after this long if its post never finishes (the worker died).
LEASE_SECONDS = ATTEMPT_TIMEOUT_SECONDS + 20.0
# How long the loop sleeps at most when nothing is due: events stored by another node, or a
# wake-up lost between a check and a commit, are picked up within this.
IDLE_POLL_SECONDS = 2.0
MIN_IDLE_SECONDS = 0.05
GAUGE_INTERVAL = 5.0
# On shutdown, posts in flight get at most this long; the rest are posted again after their lease.
STOP_GRACE_SECONDS = 2.0
# Errors stored and shown are cut to this (an endpoint's error page is not worth keeping).
MAX_ERROR_CHARS = 300


def endpoint_label(url: str) -> str:
    """The endpoint as metrics and logs name it: without user info, query or fragment, where a
    platform may have put a token."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class EventWorker:
    def __init__(
        self,
        *,
        store: MessageStore,
        snapshot: Callable[[], ConfigSnapshot],
        http: httpx.AsyncClient,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.snapshot = snapshot
        self.http = http
        self.metrics = metrics
        self.clock = clock
        self._wake = asyncio.Event()
        self._stopping = StopSignal()
        self._in_flight: dict[asyncio.Task[None], EventDelivery] = {}
        self._per_endpoint: Counter[str] = Counter()
        self._loop_task: asyncio.Task[None] | None = None
        self._gauge_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="events-loop")
        self._gauge_task = asyncio.create_task(self._gauges(), name="events-gauges")

    def wake(self) -> None:
        self._wake.set()

    def wake_threadsafe(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """A wake-up callable for code running on another thread (the store's writer)."""

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to wake
                loop.call_soon_threadsafe(self._wake.set)

        return wake

    async def stop(self, grace: float) -> None:
        """Stop claiming and give posts in flight ``grace`` seconds; any left are cancelled and
        posted again after their lease (at least once)."""
        self._stopping.set()
        self._wake.set()
        await cancel_and_wait([self._gauge_task, self._loop_task])
        if self._in_flight:
            _, pending = await asyncio.wait(
                list(self._in_flight), timeout=min(grace, STOP_GRACE_SECONDS)
            )
            await cancel_and_wait(pending)

    # -- the loop ------------------------------------------------------------------------------

    def _busy(self) -> list[str]:
        return [endpoint for endpoint, n in self._per_endpoint.items() if n >= PER_ENDPOINT]

    async def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            free = MAX_IN_FLIGHT - len(self._in_flight)
            claimed: list[EventDelivery] = []
            if free > 0:
                try:
                    claimed = await self.store.claim_event_deliveries(
                        now=self.clock(),
                        limit=free,
                        lease_seconds=LEASE_SECONDS,
                        per_endpoint=PER_ENDPOINT,
                        exclude_endpoints=self._busy(),
                    )
                except StoreError as exc:
                    log.warning("events.claim_failed", error=str(exc))
            for delivery in claimed:
                self._per_endpoint[delivery.endpoint] += 1
                task = asyncio.create_task(self._post(delivery), name="event-post")
                self._in_flight[task] = delivery
                task.add_done_callback(self._done)
            if claimed and len(self._in_flight) < MAX_IN_FLIGHT:
                continue  # there may be more due
            await self._sleep(claimed_nothing=not claimed)

    def _done(self, task: asyncio.Task[None]) -> None:
        delivery = self._in_flight.pop(task, None)
        if delivery is not None:
            self._per_endpoint[delivery.endpoint] -= 1
            if self._per_endpoint[delivery.endpoint] <= 0:
                del self._per_endpoint[delivery.endpoint]
        if not self._stopping.is_set():
            self._wake.set()

    async def _sleep(self, *, claimed_nothing: bool) -> None:
        timeout = IDLE_POLL_SECONDS
        if len(self._in_flight) < MAX_IN_FLIGHT:
            try:
                due = await self.store.next_event_due(self._busy())
            except StoreError:
                due = None
            if due is not None:
                timeout = max(0.0, min(timeout, due - self.clock()))
        if claimed_nothing:
            # something said due but the claim found nothing (a clock step, another node took
            # it): never spin on it
            timeout = max(timeout, MIN_IDLE_SECONDS)
        if timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    # -- one post ------------------------------------------------------------------------------

    async def _post(self, delivery: EventDelivery) -> None:
        label = endpoint_label(delivery.endpoint)
        tenant = self.snapshot().tenant(delivery.tenant_id)
        hook = None
        if tenant is not None:
            hook = next((h for h in tenant.webhooks if h.url == delivery.endpoint), None)
        if hook is None:
            # The endpoint left the tenant's file after the event was stored: nobody to post to.
            await self._finish(delivery, label, None, "endpoint no longer configured", give_up=True)
            return
        status: int | None = None
        error: str | None = None
        try:
            headers = signed_headers(
                delivery.event_id, delivery.body, hook.secret, now=self.clock()
            )
            response = await self.http.post(
                delivery.endpoint,
                content=delivery.body,
                headers=headers,
                timeout=ATTEMPT_TIMEOUT_SECONDS,
            )
            status = response.status_code
            if not delivery_succeeded(status):
                error = f"HTTP {status}"
        except httpx.TimeoutException:
            error = f"no answer within {ATTEMPT_TIMEOUT_SECONDS:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: could not post"
        except ValueError:
            # the secret is no usable key (the config check refuses those; kept for safety)
            error = "the endpoint's secret is not a usable signing key"
        await self._finish(delivery, label, status, error, give_up=False)

    async def _finish(
        self,
        delivery: EventDelivery,
        label: str,
        status: int | None,
        error: str | None,
        *,
        give_up: bool,
    ) -> None:
        now = self.clock()
        delivered = error is None
        retry_at = None
        if not delivered and not give_up:
            retry_at = next_attempt_at(delivery.attempts + 1, now)
        outcome = "delivered" if delivered else ("retry" if retry_at is not None else "failed")
        result = DeliveryResult(
            event_id=delivery.event_id,
            endpoint=delivery.endpoint,
            delivered=delivered,
            status_code=status,
            error=None if error is None else error[:MAX_ERROR_CHARS],
            retry_at=retry_at,
            finished_at=now,
        )
        try:
            await self.store.finish_event_delivery(result)
        except StoreError as exc:
            # Left pending under its lease: posted again once the lease is over.
            log.warning("events.result_not_written", event_id=delivery.event_id, error=str(exc))
            return
        self.metrics.event_deliveries.labels(delivery.tenant_id, label, outcome).inc()
        (log.info if delivered else log.warning)(
            "events.posted" if delivered else "events.post_failed",
            tenant=delivery.tenant_id,
            event_id=delivery.event_id,
            type=delivery.type,
            endpoint=label,
            attempt=delivery.attempts + 1,
            status=status,
            error=error,
            outcome=outcome,
        )

    async def _gauges(self) -> None:
        while not self._stopping.is_set():
            try:
                depth, oldest = await self.store.outbox_depth(now=self.clock())
                self.metrics.events_outbox_depth.set(depth)
                self.metrics.events_outbox_oldest_age.set(oldest)
            except StoreError:
                pass
            await self._stopping.pause(GAUGE_INTERVAL)
