"""Read-side use cases that the console needs and :class:`~pipecored.service.Service` does not
have: the tenants at a glance (channels, providers, each route's health, today's counts) and a
tenant's activity over time.

Like the service, every call takes the :class:`~pipecored.access.Principal` and shows only the
tenants it may act as. Every read is bounded however large the store: today's counts and the
charts come from :meth:`MessageStore.activity` (hourly counts, sampled latency), the last
failure from the log's (tenant, status, seq) index, and the tenants list is paged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from pipecored.access import Principal
from pipecored.circuit import CircuitChange, CircuitKey
from pipecored.config.registry import TenantEntry
from pipecored.errors import ValidationFailed
from pipecored.store import LogFilter, MessageRecord
from pipecored.store.base import ActivityBucket

if TYPE_CHECKING:
    from pipecored.gateway import Gateway

DAY: Final = 86_400
HOUR: Final = 3_600


@dataclass(frozen=True, slots=True)
class ActivityRange:
    """A chart's window: its length and bucket, both whole hours."""

    name: str
    label: str
    seconds: int
    bucket_seconds: int


RANGES: Final = {
    r.name: r
    for r in (
        ActivityRange("24h", "last 24 hours", DAY, HOUR),
        ActivityRange("7d", "last 7 days", 7 * DAY, 6 * HOUR),
        ActivityRange("30d", "last 30 days", 30 * DAY, DAY),
    )
}
DEFAULT_RANGE: Final = "24h"
TENANTS_PAGE: Final = 50

CircuitState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class RouteHealth:
    """One provider of a channel (its own, or a fallback) as delivery sees it now."""

    provider: str
    role: str  # "primary", "fallback 1", ...
    state: CircuitState
    reason: str | None  # what opened the circuit, while it is not closed
    since: float | None  # when it opened


@dataclass(frozen=True, slots=True)
class ChannelSummary:
    name: str
    provider: str
    is_active: bool
    routes: tuple[RouteHealth, ...]

    @property
    def healthy(self) -> bool:
        return all(route.state == "closed" for route in self.routes)


@dataclass(frozen=True, slots=True)
class TenantSummary:
    tenant_id: str
    name: str | None
    channels: tuple[ChannelSummary, ...]
    today: ActivityBucket  # outbound messages accepted since midnight UTC
    last_failure: MessageRecord | None  # the newest failed message, with its error
    config_error: str | None  # why the tenant's file on disk is not in use, when it is not

    @property
    def healthy(self) -> bool:
        return self.config_error is None and all(c.healthy for c in self.channels)


@dataclass(frozen=True, slots=True)
class TenantsPage:
    items: Sequence[TenantSummary]
    next_after: str | None  # the tenant id to continue after


class Overview:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        # the last change of each circuit (why it opened); the breakers keep only the state
        self._changes: dict[CircuitKey, CircuitChange] = {}
        self._listening = False

    def _listen(self) -> None:
        """Hear the delivery worker's circuit changes (it exists once the gateway started)."""
        if not self._listening:
            self.gateway.worker.circuits.listeners.append(self._changed)
            self._listening = True

    def _changed(self, change: CircuitChange) -> None:
        self._changes[(change.tenant, change.channel, change.provider)] = change

    # -- tenants -------------------------------------------------------------------------------

    def visible_tenants(self, principal: Principal) -> list[str]:
        tenants = self.gateway.registry.snapshot.tenants
        if principal.tenant_id is not None:
            return [principal.tenant_id] if principal.tenant_id in tenants else []
        return sorted(tenants)

    async def tenants(
        self, principal: Principal, *, after: str | None = None, limit: int = TENANTS_PAGE
    ) -> TenantsPage:
        ids = [t for t in self.visible_tenants(principal) if after is None or t > after]
        page = ids[:limit]
        items = [await self.tenant(principal, tenant_id) for tenant_id in page]
        return TenantsPage(items, page[-1] if len(ids) > limit else None)

    async def tenant(self, principal: Principal, tenant_id: str) -> TenantSummary:
        entry = self.gateway.service.tenant_entry(principal, tenant_id)
        self._listen()
        now = time.time()
        midnight = now - now % DAY
        (today,) = await self.gateway.store.activity(
            tenant_id, since=midnight, until=now, bucket_seconds=DAY
        )
        failed = await self.gateway.store.list_messages(
            tenant_id, limit=1, where=LogFilter(status="failed")
        )
        return TenantSummary(
            tenant_id=tenant_id,
            name=entry.config.name if entry.config else None,
            channels=self._channels(entry),
            today=today,
            last_failure=failed[0] if failed else None,
            config_error=str(entry.error.issues[0]) if entry.error and entry.error.issues else None,
        )

    def _channels(self, entry: TenantEntry) -> tuple[ChannelSummary, ...]:
        config = entry.config
        if config is None:
            return ()
        circuits = self.gateway.worker.circuits
        summaries = []
        for name, channel in sorted(config.channels.items()):
            routes = []
            seen: set[str] = set()
            for index, route in enumerate(channel.routes):
                if route.provider in seen:  # one circuit per provider of a channel
                    continue
                seen.add(route.provider)
                key = (entry.tenant_id, name, route.provider)
                state = circuits.state(key)
                change = self._changes.get(key)
                opened = change if change is not None and change.state == "open" else None
                routes.append(
                    RouteHealth(
                        provider=route.provider,
                        role="primary" if index == 0 else f"fallback {index}",
                        state=state,
                        reason=opened.reason if opened and state != "closed" else None,
                        since=opened.opened_at if opened and state != "closed" else None,
                    )
                )
            summaries.append(
                ChannelSummary(name, channel.provider, channel.is_active, tuple(routes))
            )
        return tuple(summaries)

    # -- charts --------------------------------------------------------------------------------

    async def activity(
        self, principal: Principal, tenant_id: str, *, range_name: str = DEFAULT_RANGE
    ) -> list[ActivityBucket]:
        """The tenant's outbound messages per bucket over one of :data:`RANGES`, ending now."""
        self.gateway.service.tenant_entry(principal, tenant_id)
        window = RANGES.get(range_name)
        if window is None:
            raise ValidationFailed(f"range: must be one of {', '.join(RANGES)}", field="range")
        now = time.time()
        # the first bucket is the one holding (now - window); dropping it keeps the count fixed
        buckets = await self.gateway.store.activity(
            tenant_id,
            since=now - window.seconds + window.bucket_seconds,
            until=now,
            bucket_seconds=window.bucket_seconds,
        )
        return buckets
