"""Delivery: the dispatch loop. Claim due messages from the store, call providers, record what
happened.

The queue lives in the store, not in memory: a claimed message carries a lease, and a retry is a
``not_before`` time, so a crash or a restart loses neither messages nor the schedule. One
:class:`DeliveryWorker` per daemon keeps up to ``delivery.concurrency`` provider calls in flight.

The decisions are made elsewhere, as pure functions: which route a message takes
(:mod:`pipecored.routing`, around open circuits) and what a failure means
(:mod:`pipecored.policy`: retry, next route, fail). This module applies them: circuit breakers
(:mod:`pipecored.circuit`) per (tenant, channel, provider), a channel's ``rateLimit`` as a token
bucket, metrics and log lines, and the store writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import httpx
import structlog

from pipecored import templates
from pipecored.circuit import CircuitBreakers, CircuitChange, CircuitKey
from pipecored.config.model import ChannelConfig, RouteConfig
from pipecored.config.registry import TenantRegistry
from pipecored.errors import StoreError
from pipecored.message import from_record
from pipecored.metrics import Metrics
from pipecored.policy import (
    Failure,
    RetrySettings,
    after_failure,
    classify,
    counts_against_circuit,
    expired,
)
from pipecored.provider import Provider, SendResult
from pipecored.provider_calls import scrub_secrets
from pipecored.provider_context import CallTarget, send_context
from pipecored.routing import Wait, choose_route
from pipecored.store import (
    AttemptOutcome,
    AttemptRecord,
    Completed,
    Failover,
    Lease,
    MessageRecord,
    MessageStore,
)
from pipecored.tasks import StopSignal, cancel_and_wait

log = structlog.get_logger("pipecored.delivery")

CLAIM_BATCH = 128
IDLE_WAIT = 1.0  # the longest the loop sleeps without looking at the store
QUEUE_GAUGE_INTERVAL = 2.0
PURGE_INTERVAL = 3600.0
# A message accepted while fewer than this many calls are in flight (or promised to other
# accepts) is handed to the worker by the accept (lease()); busier, it is queued and claimed
# with the others. Handing over each message of a loaded daemon spread its completes over more
# write transactions (0.14 per message against 0.10 with claims, in-process with 32 senders)
# and cost 3-8% of throughput in every round of a sustained A/B.
HANDOVER_BELOW = 4
# A rate-limited channel with more than this many seconds of sends already reserved is left in
# the queue by claim(), so that one throttled tenant cannot hold the worker's slots.
MAX_RATE_BACKLOG = 1.0


def _unchanged(record: MessageRecord) -> AttemptOutcome:
    """The outcome that leaves ``record`` as it is (queued again, no attempt): what the paths
    that make no call start from."""
    assert record.lease_token is not None
    return AttemptOutcome(
        message_id=record.id,
        lease_token=record.lease_token,
        attempt=None,
        status="queued",
        provider=record.provider,
        route_index=record.route_index,
        route_attempts=record.route_attempts,
    )


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
        self._stopping = StopSignal()
        self._inflight: dict[asyncio.Task[None], MessageRecord] = {}
        # slots promised to accepts in progress (lease()), taken or given back by take()
        self._reserved = 0
        # Whether the queue may hold messages due now that no claim has taken: set by wake()
        # and by a claim that took as many as it asked for, cleared by one that took fewer.
        # While it is clear, a freed slot does not send the loop to the store for nothing.
        self._maybe_due = True
        # when the earliest message waiting in the queue is due, as last read (None: none)
        self._next_due: float | None = None
        self._unwritten: list[tuple[MessageRecord, AttemptOutcome]] = []
        self._loop_task: asyncio.Task[None] | None = None
        self._gauge_task: asyncio.Task[None] | None = None
        self.circuits = CircuitBreakers(clock=clock)
        self.circuits.listeners.append(self._circuit_changed)
        # per rate-limited (tenant, channel): until when its sends are reserved (the last
        # reservation's send time), from which claims leave it out while it is far ahead
        self._reserved_until: dict[tuple[str, str], float] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="delivery-loop")
        self._gauge_task = asyncio.create_task(self._housekeeping(), name="housekeeping")

    def wake(self) -> None:
        """New work may be due. With every slot busy there is nothing to do until one frees,
        which wakes the loop itself."""
        self._maybe_due = True
        if self._free > 0:
            self._wake.set()

    @property
    def _free(self) -> int:
        return self._concurrency - len(self._inflight) - self._reserved

    # -- messages handed over by the accept ----------------------------------------------------

    def lease(self, tenant_id: str, channel: str) -> Lease | None:
        """A lease for a message due now that is being accepted, while fewer than
        :data:`HANDOVER_BELOW` calls are in flight or promised (and a slot is free): the accept
        stores the message already claimed and hands its record over with :meth:`take`, which
        saves the claim (a write, and the record read back) and the wait for the loop's next
        turn. None when busier, while stopping, while results wait to be written, or when the
        channel's rate limit is throttling it."""
        if (
            len(self._inflight) + self._reserved >= min(HANDOVER_BELOW, self._concurrency)
            or self._stopping.is_set()
            or self._unwritten
            or (self._reserved_until and (tenant_id, channel) in self._throttled())
        ):
            return None
        self._reserved += 1
        lease_seconds = self.registry.snapshot.daemon.delivery.lease
        return Lease(token=secrets.token_hex(16), until=self.clock() + lease_seconds)

    def take(self, record: MessageRecord | None) -> None:
        """The end of an accept that was given a lease: ``record`` is the message as stored
        under it, or None when nothing was stored under it (the accept failed, or replayed an
        earlier request's message), which frees the slot."""
        self._reserved -= 1
        if record is None:
            self.wake()
        elif not self._stopping.is_set():
            self._start(record)
        # Stopping: the message stays leased until the store gives it back (the SQLite store at
        # its next start, the PostgreSQL one when it closes) or the lease runs out.

    async def stop(self, grace: float) -> None:
        """Stop claiming, let in-flight calls finish within ``grace`` seconds, give the rest back
        to the queue untouched."""
        self._stopping.set()
        self._wake.set()
        await cancel_and_wait([self._gauge_task])
        if self._loop_task is not None:
            # The loop is let finish its turn, not cancelled: a claim it already sent to the
            # store must be followed by tasks for what was claimed, or those messages would stay
            # leased (unsendable) until their lease ran out, long after the restart.
            done, _ = await asyncio.wait([self._loop_task], timeout=grace)
            if not done:
                await cancel_and_wait([self._loop_task])
        if self._inflight:
            log.info("delivery.draining", in_flight=len(self._inflight), grace_seconds=grace)
            _, pending = await asyncio.wait(list(self._inflight), timeout=grace)
            # Taken before cancelling: a cancelled task leaves _inflight in its done callback.
            unfinished = [self._inflight[t] for t in pending if t in self._inflight]
            await cancel_and_wait(pending)
            for record in unfinished:
                if record.lease_token:
                    await self.store.release(record.id, record.lease_token)
            if unfinished:
                log.warning("delivery.released_unfinished", count=len(unfinished))
        if not await self._write_unwritten():
            # sent, but not recorded: the next start sends them again (at least once)
            log.error("delivery.results_not_written", count=len(self._unwritten))

    # -- the dispatch loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = await self._claim()
            except StoreError as exc:
                log.error("delivery.claim_failed", error=str(exc))
                claimed = -1
            if claimed > 0 and self._maybe_due and self._free > 0:
                continue
            self._wake.clear()
            await self._sleep(claimed)

    @property
    def _concurrency(self) -> int:
        return self.registry.snapshot.daemon.delivery.concurrency

    @property
    def unwritten(self) -> int:
        """Results of provider calls that the store could not record yet (a full disk)."""
        return len(self._unwritten)

    async def _write_unwritten(self) -> bool:
        """Retry recording the calls whose results could not be written; True when none is
        left. Until then nothing new is claimed: the disk that refused them would refuse the
        next ones too, after their calls were made."""
        while self._unwritten:
            record, outcome = self._unwritten[0]
            try:
                done = await self.store.complete(outcome)
            except StoreError:
                return False
            self._unwritten.pop(0)
            log.info("delivery.complete_written", message_id=record.id)
            self._completed(record, outcome, done)
        return True

    async def _claim(self) -> int:
        if not await self._write_unwritten():
            return -1
        free = self._free
        if free <= 0:
            return 0
        daemon = self.registry.snapshot.daemon
        limit = min(free, CLAIM_BATCH)
        self._maybe_due = False  # before asking: a wake() while the claim runs sets it again
        try:
            records = await self.store.claim(
                now=self.clock(),
                limit=limit,
                lease_seconds=daemon.delivery.lease,
                exclude=list(self._throttled()),
            )
        except StoreError:
            self._maybe_due = True
            raise
        if len(records) == limit:
            self._maybe_due = True
        for record in records:
            self._start(record)
        return len(records)

    def _start(self, record: MessageRecord) -> None:
        task = asyncio.create_task(self._deliver_safely(record))
        self._inflight[task] = record
        task.add_done_callback(self._done)

    def _throttled(self) -> dict[tuple[str, str], float]:
        """The (tenant, channel) pairs whose rate limit has more than :data:`MAX_RATE_BACKLOG`
        of sends reserved, each with the seconds until it is back under it."""
        now = self.clock()
        waits = {
            pair: until - now - MAX_RATE_BACKLOG for pair, until in self._reserved_until.items()
        }
        return {pair: wait for pair, wait in waits.items() if wait > 0}

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        due = self._next_due
        if self._maybe_due or (due is not None and due <= self.clock()):
            self._wake.set()  # the freed slot has something to take

    async def _sleep(self, claimed: int) -> None:
        timeout = IDLE_WAIT
        if claimed >= 0 and self._free > 0:
            # The throttled channels' messages are due, but claim() leaves them out until their
            # backlog shrinks: counting them would wake the loop at once, over and over.
            throttled = self._throttled()
            try:
                due = self._next_due = await self.store.next_due(exclude=list(throttled))
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

    async def _housekeeping(self) -> None:
        """The queue gauges every :data:`QUEUE_GAUGE_INTERVAL`; expired idempotency keys
        forgotten at start and every :data:`PURGE_INTERVAL` (a key is honoured 24 h)."""
        next_purge = 0.0
        while not self._stopping.is_set():
            now = self.clock()
            try:
                depth, oldest = await self.store.queue_depth(now=now)
                self.metrics.queue_depth.set(depth)
                self.metrics.queue_oldest_age.set(oldest)
                if now >= next_purge:
                    purged = await self.store.purge_idempotency(now=now)
                    next_purge = now + PURGE_INTERVAL
                    if purged:
                        log.info("store.idempotency_keys_purged", count=purged)
            except StoreError:
                pass
            await self._stopping.pause(QUEUE_GAUGE_INTERVAL)

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
        settings = daemon.delivery
        assert record.lease_token is not None
        if expired(created_at=record.created_at, now=self.clock(), max_age=settings.max_age):
            await self._finish(
                record,
                replace(
                    _unchanged(record),
                    status="failed",
                    error_code="expired",
                    error_message=f"not delivered within maxAge ({settings.max_age:g} s)",
                ),
            )
            return

        tenant = snapshot.tenant(record.tenant_id)
        channel = tenant.channels.get(record.channel) if tenant else None
        if tenant is None or channel is None or not channel.is_active:
            await self._wait_for_config(record, _unchanged(record))
            return
        # the message's own routes: its experiment arm's provider (if any), then the fallbacks
        routes = channel.routes_for(record.experiment_arm)
        route_providers = tuple(route.provider for route in routes)
        choice = choose_route(
            route_providers,
            record.route_index,
            allows=lambda provider: self.circuits.allow(
                (record.tenant_id, record.channel, provider),
                cooldown=settings.circuit.cooldown,
                trial_timeout=settings.timeout * 2,
            ),
        )
        if isinstance(choice, Wait):
            # Every route's circuit is open: wait for the first trial call, without an attempt.
            retry_at = min(
                self.circuits.retry_at(
                    (record.tenant_id, record.channel, p), settings.circuit.cooldown
                )
                for p in route_providers
            )
            await self._finish(
                record,
                replace(
                    _unchanged(record),
                    error_code="circuit_open",
                    error_message="every provider of this channel is failing; waiting for one",
                    not_before=retry_at,
                ),
            )
            return
        index = choice.index
        path = [*choice.skipped, index]
        failovers = tuple(
            Failover(routes[before].provider, routes[after].provider,
                     "circuit_open")
            for before, after in itertools.pairwise(path)
        )  # fmt: skip
        for failover in failovers:
            self._count_failover(record, failover)
        route = routes[index]
        provider = self.providers.get(route.provider)
        if provider is None:
            await self._wait_for_config(record, _unchanged(record))
            return
        route_attempts = record.route_attempts if index == record.route_index else 0
        key: CircuitKey = (record.tenant_id, record.channel, route.provider)

        await self._pace(record.tenant_id, record.channel, channel)
        started = self.clock()
        t0 = time.perf_counter()
        result = await self._call(record, provider, route, tenant.templates)
        attempt = self._attempt(
            record, provider.name, result, started=started, duration=time.perf_counter() - t0
        )
        self._record_health(key, result, settings.circuit.failure_threshold)
        sent = result if isinstance(result, SendResult) else None
        # built once, not by replace() after replace(): this is every delivery's path
        outcome = AttemptOutcome(
            message_id=record.id,
            lease_token=record.lease_token,
            attempt=attempt,
            status=sent.status if sent is not None else "queued",
            provider=provider.name,
            route_index=index,
            route_attempts=route_attempts + 1,
            provider_message_id=sent.provider_message_id if sent is not None else None,
            sent_at=self.clock() if sent is not None else None,
            failovers=failovers,
        )
        if not isinstance(result, SendResult):
            outcome = self._after_failure(record, routes, outcome, result)
        await self._finish(record, outcome)

    async def _call(
        self,
        record: MessageRecord,
        provider: Provider,
        route: RouteConfig,
        catalogue: Mapping[str, Mapping[str, Mapping[str, Any]]],
    ) -> SendResult | Failure:
        """One provider call, bounded; whatever a plugin put in its error, no credential of this
        route is recorded. A template goes as this provider's own mapping of it (failover sends
        the same logical template through the fallback's)."""
        daemon = self.registry.snapshot.daemon
        message = from_record(record)
        template = (
            templates.for_provider(catalogue, message.template, provider.name)
            if message.template is not None
            else None
        )
        target = CallTarget(daemon, provider, record.tenant_id, record.channel, route, self.http)
        ctx = send_context(target, template=template)
        try:
            # The plugin is given the timeout; this bound catches a plugin that ignores it.
            async with asyncio.timeout(daemon.delivery.timeout + 1.0):
                return await provider.send(message, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = classify(exc)
            if failure.code == "plugin_error":
                log.exception("delivery.plugin_error", provider=provider.name, message_id=record.id)
            secrets = [v for k, v in route.credentials.items() if k in provider.secret_names()]
            return replace(failure, message=scrub_secrets(failure.message, secrets))

    def _attempt(
        self,
        record: MessageRecord,
        provider: str,
        result: SendResult | Failure,
        *,
        started: float,
        duration: float,
    ) -> AttemptRecord:
        """The attempt as stored, counted and logged."""
        failure = result if isinstance(result, Failure) else None
        attempt = AttemptRecord(
            provider=provider,
            started_at=started,
            outcome=failure.outcome if failure else "success",
            http_status=result.http_status,
            error_code=failure.code if failure else None,
            error_message=failure.message if failure else None,
            duration_ms=round(duration * 1000, 3),
        )
        self.metrics.provider_duration.labels(record.channel, provider).observe(duration)
        self.metrics.provider_requests.labels(
            record.tenant_id, record.channel, provider, attempt.outcome
        ).inc()
        log.info(
            "delivery.attempt",
            tenant=record.tenant_id,
            channel=record.channel,
            provider=provider,
            message_id=record.id,
            outcome=attempt.outcome,
            error_code=attempt.error_code,
            error=attempt.error_message,
            duration_ms=attempt.duration_ms,
        )
        return attempt

    def _after_failure(
        self,
        record: MessageRecord,
        routes: Sequence[RouteConfig],
        attempted: AttemptOutcome,
        failure: Failure,
    ) -> AttemptOutcome:
        settings = self.registry.snapshot.daemon.delivery
        decision = after_failure(
            failure,
            route_index=attempted.route_index,
            route_attempts=attempted.route_attempts,
            route_count=len(routes),
            attempt_number=record.attempt_count + 1,
            settings=RetrySettings(
                max_attempts=settings.max_attempts,
                backoff_initial=settings.retry_backoff.initial,
                backoff_max=settings.retry_backoff.max,
            ),
        )
        failed = replace(attempted, error_code=failure.code, error_message=failure.message)
        if decision.action == "fail":
            return replace(failed, status="failed")
        if decision.route_index != attempted.route_index:
            failover = Failover(
                attempted.provider or "",
                routes[decision.route_index].provider,
                failure.code,
            )
            self._count_failover(record, failover)
            failed = replace(failed, failovers=(*failed.failovers, failover))
        return replace(
            failed,
            status="queued",
            route_index=decision.route_index,
            route_attempts=decision.route_attempts,
            not_before=self.clock() + decision.delay,
        )

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

    def _count_failover(self, record: MessageRecord, failover: Failover) -> None:
        self.metrics.failovers.labels(
            record.tenant_id, record.channel, failover.from_provider, failover.to_provider
        ).inc()
        log.warning(
            "delivery.failover",
            tenant=record.tenant_id,
            channel=record.channel,
            message_id=record.id,
            from_provider=failover.from_provider,
            to_provider=failover.to_provider,
            reason=failover.reason,
        )

    # -- circuits and pacing -------------------------------------------------------------------

    def _record_health(self, key: CircuitKey, result: SendResult | Failure, threshold: int) -> None:
        if isinstance(result, Failure) and counts_against_circuit(result):
            self.circuits.failure(
                key, threshold=threshold, reason=f"{result.code}: {result.message}"
            )
            return
        # The provider answered; a message it refuses says nothing about its health.
        self.circuits.success(key)
        if self.circuits.state(key) == "closed":
            self.metrics.provider_up.labels(*key).set(1)

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
        """Wait for this send's slot under the channel's rate limit. The slot is reserved in the
        store, so that the limit holds for every daemon sharing it (SPEC section 12)."""
        limit = channel.rate_limit
        pair = (tenant_id, channel_name)
        if limit is None:
            self._reserved_until.pop(pair, None)
            return
        now = self.clock()
        wait = await self.store.reserve_rate(
            f"{tenant_id}/{channel_name}", per_second=limit.per_second, burst=limit.burst, now=now
        )
        self._reserved_until[pair] = now + wait
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
            settings = tenant.channels.get(channel)
            return settings is not None and settings.serves_through(provider)

        for key in self.circuits.tracked():
            if not configured(*key):
                self.circuits.forget(key)
        self.metrics.prune_provider_up(configured)

    def forget_tenant(self, tenant_id: str) -> None:
        self.circuits.forget_tenant(tenant_id)
        for pair in [p for p in self._reserved_until if p[0] == tenant_id]:
            del self._reserved_until[pair]

    async def _finish(self, record: MessageRecord, outcome: AttemptOutcome) -> None:
        if outcome.status == "queued" and outcome.not_before is not None:
            # Whatever it waits for, a message is looked at again when it expires, and fails then.
            expires = record.created_at + self.registry.snapshot.daemon.delivery.max_age
            outcome = replace(outcome, not_before=min(outcome.not_before, expires + 0.001))
        try:
            done = await self.store.complete(outcome)
        except StoreError as exc:
            # The call happened; losing its result would send the message again once its lease
            # ran out. Kept here and written before anything new is claimed.
            self._unwritten.append((record, outcome))
            log.error("delivery.complete_failed", message_id=record.id, error=str(exc))
            return
        self._completed(record, outcome, done)

    def _completed(
        self, record: MessageRecord, outcome: AttemptOutcome, done: Completed | None
    ) -> None:
        if done is None:
            log.warning("delivery.lease_lost", message_id=record.id)
            return
        reached = [outcome.status] if outcome.status in ("sent", "delivered", "failed") else []
        # callbacks that came before the provider's answer were counted by nobody yet
        for status in [*reached, *done.deferred]:
            self.metrics.messages.labels(
                record.tenant_id, record.channel, outcome.provider or "none", status
            ).inc()
            self.metrics.count_experiment(
                record.tenant_id, record.channel, record.experiment, record.experiment_arm, status
            )
        if outcome.status == "queued" and outcome.not_before is not None:
            self._wake.set()
