"""Delivery: claim due messages from the store, call providers, record what happened.

The queue lives in the store, not in memory: a claimed message carries a lease, and a retry is a
``not_before`` time, so a crash or a restart loses neither messages nor the schedule. One
:class:`DeliveryWorker` per daemon runs a dispatch loop that keeps up to ``delivery.concurrency``
provider calls in flight.

A channel's routes are its provider followed by its fallbacks. A message retries retryable errors
on its current route up to ``maxAttempts`` times (exponential backoff, full jitter, the provider's
Retry-After when larger), then moves to the next route; an error that says the provider cannot
serve now (revoked credentials) moves on at once; a permanent error fails the message.

Each (tenant, channel, provider) has a circuit breaker (``pipecored.circuit``): while it is open
no call goes to that provider; messages move to the next route, or wait for the trial call.
A channel's ``rateLimit`` paces its calls with a token bucket instead of collecting 429s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog

from pipecored.calls import scrub_secrets
from pipecored.circuit import CircuitBreakers, CircuitChange, CircuitKey
from pipecored.config.model import ChannelConfig, DaemonConfig, RateLimitConfig, RouteConfig
from pipecored.config.registry import TenantRegistry
from pipecored.errors import ProviderError, StoreError
from pipecored.metrics import Metrics
from pipecored.policy import backoff_delay
from pipecored.provider import OutboundMessage, Provider, SendContext, SendResult
from pipecored.ratelimit import TokenBucket
from pipecored.store import AttemptOutcome, AttemptRecord, MessageRecord, MessageStore
from pipecored.store.base import AttemptOutcomeName

log = structlog.get_logger("pipecored.delivery")

CLAIM_BATCH = 128
IDLE_WAIT = 1.0  # the longest the loop sleeps without looking at the store
QUEUE_GAUGE_INTERVAL = 2.0
# A rate-limited channel with more than this many seconds of sends already reserved is left in
# the queue by claim(), so that one throttled tenant cannot hold the worker's slots.
MAX_RATE_BACKLOG = 1.0


def outbound_message(record: MessageRecord) -> OutboundMessage:
    return outbound_from_payload(record.id, record.tenant_id, record.channel, record.payload)


def outbound_from_payload(
    message_id: str, tenant_id: str, channel: str, p: Mapping[str, Any]
) -> OutboundMessage:
    return OutboundMessage(
        id=message_id,
        tenant_id=tenant_id,
        channel=channel,
        to=tuple(p.get("to", ())),
        body=p.get("body"),
        subject=p.get("subject"),
        html=p.get("html"),
        text=p.get("text"),
        sender=p.get("sender"),
        reply_to=tuple(p.get("reply_to", ())),
        cc=tuple(p.get("cc", ())),
        bcc=tuple(p.get("bcc", ())),
        headers=dict(p.get("headers", {})),
        tags=dict(p.get("tags", {})),
    )


def webhook_url(public_url: str | None, tenant_id: str, channel: str, provider: str) -> str | None:
    if not public_url:
        return None
    query = urlencode({"tenant_id": tenant_id, "provider": provider})
    return f"{public_url}/messaging/webhook/{channel}?{query}"


def send_context(
    daemon: DaemonConfig,
    provider: Provider,
    tenant_id: str,
    channel: str,
    route: RouteConfig,
    http: httpx.AsyncClient,
) -> SendContext:
    return SendContext(
        tenant_id=tenant_id,
        channel=channel,
        credentials=route.credentials,
        base_url=route_base_url(daemon, provider, route),
        http=http,
        timeout=daemon.delivery.timeout,
        status_callback_url=webhook_url(
            daemon.server.public_url, tenant_id, channel, provider.name
        ),
        settings=provider_settings(daemon, provider),
    )


def provider_settings(daemon: DaemonConfig, provider: Provider) -> dict[str, str]:
    """The provider's default settings overlaid with the daemon file's ``providers:`` entry."""
    defaults = daemon.providers.get(provider.name)
    return {**provider.default_settings, **(defaults.settings() if defaults else {})}


def route_base_url(daemon: DaemonConfig, provider: Provider, route: RouteConfig) -> str:
    """The route's own base URL, else the daemon file's for the provider, else the plugin's."""
    defaults = daemon.providers.get(provider.name)
    base_url = (
        route.base_url or (defaults.base_url if defaults else None) or provider.default_base_url
    )
    return base_url.rstrip("/")


@dataclass(frozen=True, slots=True)
class _Failure:
    outcome: AttemptOutcomeName
    code: str
    message: str
    http_status: int | None
    retry_after: float | None
    unavailable: bool

    @property
    def retryable(self) -> bool:
        return self.outcome != "permanent_error"


def classify(exc: BaseException) -> _Failure:
    if isinstance(exc, ProviderError):
        outcome: AttemptOutcomeName = "permanent_error"
        if exc.code == "timeout":
            outcome = "timeout"
        elif exc.retryable:
            outcome = "retryable_error"
        return _Failure(
            outcome,
            exc.code or ("provider_error" if exc.retryable else "rejected"),
            exc.message,
            exc.http_status,
            exc.retry_after,
            exc.unavailable,
        )
    if isinstance(exc, httpx.TimeoutException | asyncio.TimeoutError):
        return _Failure("timeout", "timeout", "provider call timed out", None, None, False)
    if isinstance(exc, httpx.TransportError):
        return _Failure(
            "retryable_error", "connection_error", type(exc).__name__, None, None, False
        )
    # A plugin bug must not lose the message: retry, bounded by maxAttempts and maxAge.
    return _Failure("retryable_error", "plugin_error", type(exc).__name__, None, None, False)


class DeliveryWorker:
    def __init__(
        self,
        *,
        store: MessageStore,
        registry: TenantRegistry,
        providers: Mapping[str, Provider],
        http: httpx.AsyncClient,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.registry = registry
        self.providers = providers
        self.http = http
        self.metrics = metrics
        self.clock = clock
        self._wake = asyncio.Event()
        self._stopping = False
        self._inflight: dict[asyncio.Task[None], MessageRecord] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._gauge_task: asyncio.Task[None] | None = None
        self.circuits = CircuitBreakers(clock=clock)
        self.circuits.listeners.append(self._circuit_changed)
        self._buckets: dict[tuple[str, str], tuple[RateLimitConfig, TokenBucket]] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="delivery-loop")
        self._gauge_task = asyncio.create_task(self._update_gauges(), name="queue-gauges")

    def wake(self) -> None:
        """New work may be due. With every slot busy there is nothing to do until one frees,
        which wakes the loop itself."""
        if len(self._inflight) < self._concurrency:
            self._wake.set()

    async def stop(self, grace: float) -> None:
        """Stop claiming, let in-flight calls finish within ``grace`` seconds, give the rest back
        to the queue untouched."""
        self._stopping = True
        self._wake.set()
        if self._gauge_task is not None:
            self._gauge_task.cancel()
            await asyncio.gather(self._gauge_task, return_exceptions=True)
        if self._loop_task is not None:
            # The loop is let finish its turn, not cancelled: a claim it already sent to the
            # store must be followed by tasks for what was claimed, or those messages would stay
            # leased (unsendable) until their lease ran out, long after the restart.
            done, _ = await asyncio.wait([self._loop_task], timeout=grace)
            if not done:
                self._loop_task.cancel()
                await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._inflight:
            log.info("delivery.draining", in_flight=len(self._inflight), grace_seconds=grace)
            _, pending = await asyncio.wait(list(self._inflight), timeout=grace)
            # Taken before cancelling: a cancelled task leaves _inflight in its done callback.
            unfinished = [self._inflight[t] for t in pending if t in self._inflight]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for record in unfinished:
                if record.lease_token:
                    await self.store.release(record.id, record.lease_token)
            if unfinished:
                log.warning("delivery.released_unfinished", count=len(unfinished))

    # -- the dispatch loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                claimed = await self._claim()
            except StoreError as exc:
                log.error("delivery.claim_failed", error=str(exc))
                claimed = -1
            if claimed > 0 and len(self._inflight) < self._concurrency:
                continue
            self._wake.clear()
            await self._sleep(claimed)

    @property
    def _concurrency(self) -> int:
        return self.registry.snapshot.daemon.delivery.concurrency

    async def _claim(self) -> int:
        free = self._concurrency - len(self._inflight)
        if free <= 0:
            return 0
        daemon = self.registry.snapshot.daemon
        records = await self.store.claim(
            now=self.clock(),
            limit=min(free, CLAIM_BATCH),
            lease_seconds=daemon.delivery.lease,
            exclude=list(self._throttled()),
        )
        for record in records:
            task = asyncio.create_task(self._deliver_safely(record))
            self._inflight[task] = record
            task.add_done_callback(self._done)
        return len(records)

    def _throttled(self) -> dict[tuple[str, str], float]:
        """The (tenant, channel) pairs whose rate limit has more than :data:`MAX_RATE_BACKLOG`
        of sends reserved, each with the seconds until it is back under it."""
        waits = {pair: b.backlog() - MAX_RATE_BACKLOG for pair, (_, b) in self._buckets.items()}
        return {pair: wait for pair, wait in waits.items() if wait > 0}

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()

    async def _sleep(self, claimed: int) -> None:
        timeout = IDLE_WAIT
        if claimed == 0 and len(self._inflight) < self._concurrency:
            # The throttled channels' messages are due, but claim() leaves them out until their
            # backlog shrinks: counting them would wake the loop at once, over and over.
            throttled = self._throttled()
            try:
                due = await self.store.next_due(exclude=list(throttled))
            except StoreError:
                due = None
            if due is not None:
                timeout = min(IDLE_WAIT, max(0.0, due - self.clock()))
            timeout = min([timeout, *throttled.values()])
        if timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # no task per wait, unlike wait_for
                await self._wake.wait()

    async def _update_gauges(self) -> None:
        while True:
            try:
                depth, oldest = await self.store.queue_depth(now=self.clock())
                self.metrics.queue_depth.set(depth)
                self.metrics.queue_oldest_age.set(oldest)
            except StoreError:
                pass
            await asyncio.sleep(QUEUE_GAUGE_INTERVAL)

    # -- one message ---------------------------------------------------------------------------

    async def _deliver_safely(self, record: MessageRecord) -> None:
        try:
            await self.deliver(record)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease expires and the message is claimed again; nothing is lost.
            log.exception("delivery.crashed", message_id=record.id, tenant=record.tenant_id)

    async def deliver(self, record: MessageRecord) -> None:
        snapshot = self.registry.snapshot
        daemon = snapshot.daemon
        policy = daemon.delivery
        now = self.clock()
        assert record.lease_token is not None
        unchanged = AttemptOutcome(
            message_id=record.id,
            lease_token=record.lease_token,
            attempt=None,
            status="queued",
            provider=record.provider,
            route_index=record.route_index,
            route_attempts=record.route_attempts,
        )

        if now - record.created_at > policy.max_age:
            await self._finish(
                record,
                replace(
                    unchanged,
                    status="failed",
                    error_code="expired",
                    error_message=f"not delivered within maxAge ({policy.max_age:g} s)",
                ),
            )
            return

        tenant = snapshot.tenant(record.tenant_id)
        channel = tenant.channels.get(record.channel) if tenant else None  # type: ignore[call-overload]
        provider = None
        if channel is not None and channel.is_active:
            index = min(record.route_index, len(channel.routes) - 1)
            route = channel.routes[index]
            provider = self.providers.get(route.provider)
        if channel is None or provider is None or not channel.is_active:
            await self._wait_for_config(record, unchanged)
            return

        route_attempts = record.route_attempts
        key: CircuitKey = (record.tenant_id, record.channel, route.provider)
        while not self.circuits.allow(
            key, cooldown=policy.circuit.cooldown, trial_timeout=policy.timeout * 2
        ):
            if index + 1 >= len(channel.routes):
                # No fallback left: wait for the circuit's trial call rather than hammer it.
                await self._finish(
                    record,
                    replace(
                        unchanged,
                        route_index=index,
                        route_attempts=route_attempts,
                        error_code="circuit_open",
                        error_message=f"provider {route.provider} is failing; waiting for it",
                        not_before=self.circuits.retry_at(key, policy.circuit.cooldown),
                    ),
                )
                return
            self._count_failover(
                record, route.provider, channel.routes[index + 1].provider, "circuit_open"
            )
            index += 1
            route_attempts = 0
            route = channel.routes[index]
            key = (record.tenant_id, record.channel, route.provider)
            provider = self.providers.get(route.provider)
            if provider is None:
                await self._wait_for_config(record, unchanged)
                return

        await self._pace(record.tenant_id, record.channel, channel)
        message = outbound_message(record)
        ctx = send_context(daemon, provider, record.tenant_id, record.channel, route, self.http)
        started = self.clock()
        t0 = time.perf_counter()
        try:
            # The plugin is given the timeout; this bound catches a plugin that ignores it.
            result: SendResult | _Failure
            async with asyncio.timeout(policy.timeout + 1.0):
                result = await provider.send(message, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            result = classify(exc)
            if result.code == "plugin_error":
                log.exception("delivery.plugin_error", provider=provider.name, message_id=record.id)
            # Whatever a plugin put in its message, no credential of this route is recorded.
            secrets = [v for k, v in route.credentials.items() if k in provider.secret_names()]
            result = replace(result, message=scrub_secrets(result.message, secrets))
        duration = time.perf_counter() - t0

        attempt = AttemptRecord(
            provider=provider.name,
            started_at=started,
            outcome="success" if isinstance(result, SendResult) else result.outcome,
            http_status=result.http_status,
            error_code=None if isinstance(result, SendResult) else result.code,
            error_message=None if isinstance(result, SendResult) else result.message,
            duration_ms=round(duration * 1000, 3),
        )
        self.metrics.provider_duration.labels(record.channel, provider.name).observe(duration)
        self.metrics.provider_requests.labels(
            record.tenant_id, record.channel, provider.name, attempt.outcome
        ).inc()
        log.info(
            "delivery.attempt",
            tenant=record.tenant_id,
            channel=record.channel,
            provider=provider.name,
            message_id=record.id,
            outcome=attempt.outcome,
            error_code=attempt.error_code,
            duration_ms=attempt.duration_ms,
        )
        self._record_health(key, result, policy.circuit.failure_threshold)
        attempted = replace(
            unchanged,
            attempt=attempt,
            provider=provider.name,
            route_index=index,
            route_attempts=route_attempts + 1,
        )
        if isinstance(result, SendResult):
            outcome = replace(
                attempted,
                status=result.status,
                provider_message_id=result.provider_message_id,
                sent_at=self.clock(),
            )
        else:
            outcome = self._after_failure(record, channel, attempted, result)
        await self._finish(record, outcome)

    def _after_failure(
        self,
        record: MessageRecord,
        channel: ChannelConfig,
        attempted: AttemptOutcome,
        failure: _Failure,
    ) -> AttemptOutcome:
        policy = self.registry.snapshot.daemon.delivery
        now = self.clock()
        failed = replace(attempted, error_code=failure.code, error_message=failure.message)
        index = attempted.route_index
        has_next = index + 1 < len(channel.routes)
        exhausted = attempted.route_attempts >= policy.max_attempts
        if has_next and (failure.unavailable or (failure.retryable and exhausted)):
            self._count_failover(
                record, attempted.provider or "", channel.routes[index + 1].provider, failure.code
            )
            return replace(
                failed, status="queued", route_index=index + 1, route_attempts=0, not_before=now
            )
        if failure.retryable and not failure.unavailable and not exhausted:
            delay = backoff_delay(
                attempted.route_attempts,
                initial=policy.retry_backoff.initial,
                maximum=policy.retry_backoff.max,
                retry_after=failure.retry_after,
            )
            return replace(failed, status="queued", not_before=now + delay)
        return replace(failed, status="failed")

    async def _wait_for_config(self, record: MessageRecord, unchanged: AttemptOutcome) -> None:
        """The tenant or channel went away, was paused, or names a provider no longer loaded
        after the message was accepted: wait for the configuration to come back, within maxAge,
        rather than fail what was promised."""
        backoff = self.registry.snapshot.daemon.delivery.retry_backoff
        await self._finish(
            record,
            replace(
                unchanged,
                error_code="channel_unavailable",
                error_message="the tenant's channel is not configured, active or loadable",
                not_before=self.clock() + backoff.max,
            ),
        )

    def _count_failover(
        self, record: MessageRecord, from_provider: str, to_provider: str, reason: str
    ) -> None:
        self.metrics.failovers.labels(
            record.tenant_id, record.channel, from_provider, to_provider
        ).inc()
        log.warning(
            "delivery.failover",
            tenant=record.tenant_id,
            channel=record.channel,
            message_id=record.id,
            from_provider=from_provider,
            to_provider=to_provider,
            reason=reason,
        )

    # -- circuits and pacing -------------------------------------------------------------------

    def _record_health(
        self, key: CircuitKey, result: SendResult | _Failure, threshold: int
    ) -> None:
        if isinstance(result, SendResult) or not (result.retryable or result.unavailable):
            # The provider answered; a message it refuses says nothing about its health.
            self.circuits.success(key)
            if self.circuits.state(key) == "closed":
                self.metrics.provider_up.labels(*key).set(1)
        else:
            self.circuits.failure(
                key, threshold=threshold, reason=f"{result.code}: {result.message}"
            )

    def _circuit_changed(self, change: CircuitChange) -> None:
        up = 1 if change.state == "closed" else 0
        self.metrics.provider_up.labels(change.tenant, change.channel, change.provider).set(up)
        (log.info if up else log.warning)(
            "delivery.circuit_" + change.state,
            tenant=change.tenant,
            channel=change.channel,
            provider=change.provider,
            reason=change.reason,
        )

    async def _pace(self, tenant_id: str, channel_name: str, channel: ChannelConfig) -> None:
        limit = channel.rate_limit
        pair = (tenant_id, channel_name)
        if limit is None:
            self._buckets.pop(pair, None)
            return
        current = self._buckets.get(pair)
        if current is None or current[0] != limit:
            current = (limit, TokenBucket(limit.per_second, limit.burst))
            self._buckets[pair] = current
        wait = current[1].reserve()
        if wait > 0:
            await asyncio.sleep(wait)

    def prune(self) -> None:
        """After a reload: forget the circuits (and provider_up series) of routes that are no
        longer configured, so a provider switched away from does not stay "down" forever."""
        snapshot = self.registry.snapshot

        def configured(tenant_id: str, channel: str, provider: str) -> bool:
            tenant = snapshot.tenant(tenant_id)
            if tenant is None:
                return tenant_id in snapshot.tenants  # never valid: nothing to judge by yet
            settings = tenant.channels.get(channel)  # type: ignore[call-overload]
            return settings is not None and any(r.provider == provider for r in settings.routes)

        for key in self.circuits.tracked():
            if not configured(*key):
                self.circuits.forget(key)
        self.metrics.prune_provider_up(configured)

    def forget_tenant(self, tenant_id: str) -> None:
        self.circuits.forget_tenant(tenant_id)
        for pair in [p for p in self._buckets if p[0] == tenant_id]:
            del self._buckets[pair]

    async def _finish(self, record: MessageRecord, outcome: AttemptOutcome) -> None:
        if outcome.status == "queued" and outcome.not_before is not None:
            # Whatever it waits for, a message is looked at again when it expires, and fails then.
            expires = record.created_at + self.registry.snapshot.daemon.delivery.max_age
            outcome = replace(outcome, not_before=min(outcome.not_before, expires + 0.001))
        done = await self.store.complete(outcome)
        if done is None:
            log.warning("delivery.lease_lost", message_id=record.id)
            return
        reached = [outcome.status] if outcome.status in ("sent", "delivered", "failed") else []
        # callbacks that came before the provider's answer were counted by nobody yet
        for status in [*reached, *done.deferred]:
            self.metrics.messages.labels(
                record.tenant_id, record.channel, outcome.provider or "none", status
            ).inc()
        if outcome.status == "queued" and outcome.not_before is not None:
            self._wake.set()
