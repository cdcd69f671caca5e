"""The use cases, one method each: what the HTTP API, the console or a CLI command asks of the
gateway. Handlers parse a request, call one method here and serialize what it returns.

Each call reads one configuration snapshot, checks what the :class:`~pipecored.access.Principal`
may do, and raises :class:`~pipecored.errors.ApiError` subclasses for what the caller did wrong.
A :class:`~pipecored.errors.StoreError` is left to rise: the API answers it ``503
store_unavailable`` in one place.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

import orjson
import structlog
from pydantic import Field, ValidationError

from pipecored import suppressions, templates
from pipecored.access import Principal, require_admin, require_tenant
from pipecored.channels import ChannelSet
from pipecored.config.loader import has_env_ref
from pipecored.config.model import ChannelConfig, ExperimentConfig, TenantConfig
from pipecored.config.registry import ConfigSnapshot, TenantEntry
from pipecored.config.writer import UneditableTenantFile, update_channel
from pipecored.errors import (
    ConfigError,
    Conflict,
    MessageRejected,
    NotFound,
    ProviderError,
    RecipientSuppressed,
    ServiceUnavailable,
    ValidationFailed,
    WebhookError,
)
from pipecored.experiments import ArmCounts, experiment_p_value, significant
from pipecored.message import new_message
from pipecored.provider import (
    InboundMessage,
    OutboundMessage,
    Provider,
    RecipientOptOut,
    StatusEvent,
    WebhookRequest,
    WebhookResponse,
)
from pipecored.provider_context import CallTarget, webhook_context
from pipecored.quiet_hours import held_until
from pipecored.routing import assign_arm
from pipecored.send_body import Body, TemplateSend, parse_send, validation_failed
from pipecored.store import (
    EVERY_MESSAGE,
    ArmResult,
    EndpointHealth,
    EventRecord,
    IdempotencyClaim,
    IdempotencyConflict,
    LogFilter,
    MessageRecord,
    RecipientsSuppressed,
    StoreStats,
    SuppressionRecord,
    new_message_id,
)

if TYPE_CHECKING:
    from pipecored.gateway import Gateway

log = structlog.get_logger("pipecored.service")

IDEMPOTENCY_TTL = 24 * 3600.0
# Channels whose inbound texts are read for opt-out keywords (SPEC section 9).
OPT_OUT_CHANNELS = frozenset({"sms", "whatsapp"})
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True, slots=True)
class Accepted:
    record: MessageRecord
    replayed: bool  # an Idempotency-Key matched an earlier request: nothing new was stored


class _Seq(Protocol):
    @property
    def seq(self) -> int: ...


_Item = TypeVar("_Item", bound=_Seq)


@dataclass(frozen=True, slots=True)
class Page(Generic[_Item]):
    """A page of a log, list or event feed, and the seq to continue from when there is more
    (logs go back from it, suppressions and events on after it)."""

    items: Sequence[_Item]
    next_seq: int | None

    @classmethod
    def of(cls, records: Sequence[_Item], limit: int) -> Page[_Item]:
        """From ``limit + 1`` records asked of the store: the extra one says there is more."""
        page = records[:limit]
        return cls(page, page[-1].seq if len(records) > limit else None)


@dataclass(frozen=True, slots=True)
class ConfigChange:
    tenant_id: str
    entry: TenantEntry
    created: bool


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    response: WebhookResponse
    events: int


@dataclass(frozen=True, slots=True)
class ExperimentArm:
    counts: ArmCounts
    weight: float | None  # None: no longer configured
    provider: str | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None


@dataclass(frozen=True, slots=True)
class ExperimentResult:
    channel: str
    name: str
    active: bool  # the channel's current experiment
    arms: tuple[ExperimentArm, ...]
    p_value: float | None
    significant: bool


class SuppressionBody(Body):
    """``POST /messaging/suppressions/{tenant}``'s body."""

    channel: str
    address: str = Field(min_length=1, max_length=320)
    reason: str | None = Field(default=None, max_length=500)


class ProviderSwitch(Body):
    """``POST /messaging/config/provider``'s body, without the tenant id."""

    channel: str
    provider: str
    credentials: dict[str, str] = {}
    is_active: bool = True


class Service:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @property
    def channels(self) -> ChannelSet:
        return self.gateway.channels

    @property
    def snapshot(self) -> ConfigSnapshot:
        return self.gateway.registry.snapshot

    # -- tenants -------------------------------------------------------------------------------

    def tenant_entry(self, principal: Principal, tenant_id: str) -> TenantEntry:
        """The tenant as this caller may see it: 403 for another tenant's key, 404 if unknown."""
        require_tenant(principal, tenant_id)
        entry = self.snapshot.tenants.get(tenant_id)
        if entry is None:
            raise NotFound(f"unknown tenant {tenant_id!r}", code="tenant_not_found")
        return entry

    def tenant(self, principal: Principal, tenant_id: str) -> TenantConfig:
        entry = self.tenant_entry(principal, tenant_id)
        if entry.config is None:
            raise Conflict(
                f"tenant {tenant_id!r} has no valid configuration", code="tenant_config_invalid"
            )
        return entry.config

    def _channel(self, name: str) -> None:
        if name not in self.channels:
            raise NotFound(f"unknown channel {name!r}", code="unknown_channel")

    def _configured(self, tenant: TenantConfig, tenant_id: str, channel: str) -> ChannelConfig:
        config = tenant.channels.get(channel)
        if config is None:
            raise NotFound(
                f"tenant {tenant_id!r} has no {channel} channel", code="channel_not_configured"
            )
        return config

    # -- sending -------------------------------------------------------------------------------

    async def accept(
        self,
        principal: Principal,
        channel: str,
        data: dict[str, Any],
        *,
        tenant_id: str | None,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Validate a send and store it durably; the worker takes it from the store."""
        self._channel(channel)
        if not self.gateway.accepting:
            raise ServiceUnavailable("pipecored is shutting down", code="shutting_down")
        tenant_id = tenant_id or principal.tenant_id
        if tenant_id is None:
            raise ValidationFailed("tenant_id: required with an admin key", field="tenant_id")
        tenant = self.tenant(principal, tenant_id)
        config = self._configured(tenant, tenant_id, channel)
        if not config.is_active:
            raise Conflict(
                f"tenant {tenant_id!r}'s {channel} channel is inactive", code="channel_inactive"
            )

        now = time.time()
        parsed = parse_send(
            self.channels[channel], data, message_id=new_message_id(), tenant_id=tenant_id, now=now
        )
        message = parsed.message
        if parsed.template is not None:
            message = self._with_template(tenant, config, message, parsed.template)
        experiment = config.experiment
        arm = None
        if experiment is not None:
            arm = assign_arm([(a.name, a.weight) for a in experiment.arms], message.id)
        first_route = config.routes_for(arm)[0]
        provider = self.gateway.providers.get(first_route.provider)
        if provider is not None:
            try:
                provider.check_message(message, first_route.credentials)
            except MessageRejected as exc:
                field = "from" if exc.field == "sender" else exc.field
                raise ValidationFailed(f"{field}: {exc.message}", field=field) from None

        not_before = parsed.send_at
        if tenant.quiet_hours is not None and not parsed.urgent:
            held = held_until(tenant.quiet_hours, channel, not_before or now)
            if held is not None:
                not_before = held
        recipients = self._suppression_keys(message)
        claim = None
        if idempotency_key is not None:
            claim = _idempotency_claim(idempotency_key, channel, tenant_id, data, now)
        worker = self.gateway.worker
        # Due now with a delivery slot free: stored already claimed, and handed to the worker.
        lease = worker.lease(tenant_id, channel) if not_before is None else None
        row = new_message(
            message,
            to=parsed.to,
            now=now,
            not_before=not_before,
            scheduled=parsed.send_at is not None,
            experiment=experiment.name if experiment is not None and arm is not None else None,
            experiment_arm=arm,
            lease=lease,
            suppression_keys=tuple(recipients.values()),
        )
        stored = None
        try:
            result = await self.gateway.store.accept(row, claim)
            if not result.replayed:
                stored = result.record
        except RecipientsSuppressed as exc:
            raise _suppressed(message, recipients, exc.keys) from None
        except IdempotencyConflict:
            raise Conflict(
                "this Idempotency-Key was used with a different request",
                code="idempotency_key_reused",
            ) from None
        finally:
            if lease is not None:
                worker.take(stored)
        if stored is not None:
            self.gateway.metrics.messages_accepted.labels(tenant_id, channel).inc()
            self.gateway.metrics.count_experiment(
                tenant_id, channel, stored.experiment, stored.experiment_arm, "accepted"
            )
            if lease is None:
                worker.wake()
        return Accepted(result.record, result.replayed)

    def _with_template(
        self,
        tenant: TenantConfig,
        config: ChannelConfig,
        message: OutboundMessage,
        template: TemplateSend,
    ) -> OutboundMessage:
        """The message with the tenant's template resolved: checked against the catalogue for
        every provider the channel may fail over to, its text (when it has one) as the body."""
        try:
            resolved = templates.resolve(
                tenant.templates,
                name=template.name,
                language=template.language,
                variables=template.variables,
                providers=config.route_providers,
            )
        except templates.TemplateProblem as exc:
            raise ValidationFailed(f"{exc.field}: {exc}", field=exc.field) from None
        if (
            resolved.text is not None
            and len(resolved.text) > self.channels[message.channel].max_body
        ):
            raise ValidationFailed(
                "template: its text is over the channel's length", field="template"
            )
        return replace(message, template=resolved.ref, body=resolved.text)

    async def cancel(self, principal: Principal, message_id: str) -> MessageRecord:
        """Cancel a scheduled or queued message: it is never sent. 409 once it is on its way."""
        record = await self.message(principal, message_id)
        canceled = await self.gateway.store.cancel(record.id, now=time.time())
        if canceled is None:
            current = await self.gateway.store.get(record.id)
            status = current.status if current else record.status
            raise Conflict(
                f"only scheduled or queued messages can be canceled (this one is {status})",
                code="not_cancelable",
            )
        return canceled

    async def message(self, principal: Principal, message_id: str) -> MessageRecord:
        """The message if this caller may see it; another tenant's message is 404 as if absent."""
        # No id holds a NUL, and PostgreSQL could not even be asked for one: 404 on every store.
        record = None if "\x00" in message_id else await self.gateway.store.get(message_id)
        if record is None or not principal.may_act_as(record.tenant_id):
            raise NotFound(f"no message {message_id!r}", code="message_not_found")
        return record

    async def retry(self, principal: Principal, message_id: str) -> MessageRecord:
        """Queue a failed outbound message again, on its channel's first route."""
        record = await self.message(principal, message_id)
        if record.direction != "outbound" or record.status != "failed":
            raise Conflict(
                f"only failed outbound messages can be retried (this one is {record.status})",
                code="not_retryable",
            )
        requeued = await self.gateway.store.requeue(record.id, now=time.time())
        if requeued is None:
            raise Conflict("the message is no longer failed", code="not_retryable")
        self.gateway.worker.wake()
        return requeued

    # -- reading -------------------------------------------------------------------------------

    async def logs(
        self, principal: Principal, tenant_id: str, *, limit: int, where: LogFilter = EVERY_MESSAGE
    ) -> Page[MessageRecord]:
        self.tenant_entry(principal, tenant_id)
        records = await self.gateway.store.list_messages(tenant_id, limit=limit + 1, where=where)
        return Page.of(records, limit)

    async def stats(
        self, principal: Principal, tenant_id: str, *, since: float | None = None
    ) -> StoreStats:
        self.tenant_entry(principal, tenant_id)
        return await self.gateway.store.stats(tenant_id, since=since)

    # -- configuration -------------------------------------------------------------------------

    async def set_provider(
        self, principal: Principal, tenant_id: str | None, data: dict[str, Any]
    ) -> ConfigChange:
        """Set a tenant's provider for a channel, written to the tenant's file (a new tenant is
        created), and live for the next send."""
        require_admin(principal)
        if tenant_id is None:
            raise ValidationFailed("tenantId: required", field="tenantId")
        try:
            body = ProviderSwitch.model_validate(data)
        except ValidationError as exc:
            raise validation_failed(exc) from None
        if body.channel not in self.channels:
            names = ", ".join(self.channels.names)
            raise ValidationFailed(f"channel: must be one of {names}", field="channel")
        provider = self._provider_for(body.provider, body.channel)
        for name, value in body.credentials.items():
            if has_env_ref(value):
                # Written to the file, a ${NAME} would be filled from the daemon's environment
                # and sent to the provider: an API caller could make the daemon disclose any
                # variable.
                raise ValidationFailed(
                    f"credentials.{name}: ${{...}} references can only be written in the file",
                    field=f"credentials.{name}",
                )
        gateway = self.gateway
        async with gateway.config_lock:
            try:
                tenant, created = await asyncio.to_thread(
                    update_channel,
                    gateway.config_dir,
                    tenant_id,
                    body.channel,
                    provider=provider.name,
                    credentials=body.credentials,
                    is_active=body.is_active,
                    providers=gateway.providers,
                    env=gateway.registry.env,
                    taken_keys=gateway.registry.keys_of_others(tenant_id),
                    actor=f"key sha256:{principal.key_id}" if principal.key_id else None,
                )
            except UneditableTenantFile as exc:
                raise Conflict(
                    f"tenant {tenant_id!r}: {exc.issues[0].message}", code="tenant_config_invalid"
                ) from None
            except OSError as exc:
                raise _unwritable(exc) from None
            except ConfigError as exc:
                issue = exc.issues[0]
                field = _request_field(issue.path) or "tenantId"
                raise ValidationFailed(f"{field}: {issue.message}", field=field) from None
            gateway.registry.replace_tenant(tenant_id, tenant)
        log.info(
            "config.provider_set",
            tenant=tenant_id,
            channel=body.channel,
            provider=provider.name,
            created=created,
        )
        return ConfigChange(tenant_id, TenantEntry(tenant_id, tenant), created)

    def _provider_for(self, name: str, channel: str) -> Provider:
        provider = self.gateway.providers.get(name)
        if provider is None:
            known = ", ".join(sorted(self.gateway.providers))
            raise ValidationFailed(
                f"provider: unknown provider {name!r} (loaded: {known})", field="provider"
            )
        if channel not in provider.channels:
            raise ValidationFailed(f"provider: {name} does not serve {channel}", field="provider")
        return provider

    # -- provider callbacks --------------------------------------------------------------------

    def body_limit(self) -> int:
        return self.snapshot.daemon.server.max_body_bytes

    def webhook_target(
        self, tenant_id: str | None, channel: str, provider_name: str | None
    ) -> tuple[str, str]:
        """Check that a callback names a configured route before its body is read; returns the
        tenant id and the provider's name."""
        self._channel(channel)
        if not tenant_id:
            raise ValidationFailed("tenant_id: required query parameter", field="tenant_id")
        tenant = self.snapshot.tenant(tenant_id)
        if tenant is None:
            raise NotFound(f"unknown tenant {tenant_id!r}", code="tenant_not_found")
        config = self._configured(tenant, tenant_id, channel)
        name = provider_name or config.provider
        if config.route_for(name) is None or name not in self.gateway.providers:
            raise NotFound(
                f"provider {name!r} is not configured for this channel",
                code="provider_not_configured",
            )
        return tenant_id, name

    async def handle_webhook(
        self, tenant_id: str, channel: str, provider_name: str, request: WebhookRequest
    ) -> WebhookOutcome:
        """Have the provider verify and parse a callback, then apply its status events (forward
        only) and inbound messages. ``request.url`` is rewritten to the public URL the provider
        signed when ``server.publicUrl`` is set."""
        snapshot = self.snapshot
        gateway = self.gateway
        tenant = snapshot.tenant(tenant_id)
        config = tenant.channels.get(channel) if tenant else None
        route = config.route_for(provider_name) if config else None
        provider = gateway.providers.get(provider_name)
        if config is None or route is None or provider is None:
            # the configuration changed while the body was read
            raise NotFound(
                f"provider {provider_name!r} is not configured for this channel",
                code="provider_not_configured",
            )
        public_url = snapshot.daemon.server.public_url
        if public_url:
            request = replace(request, url=public_url + _path_and_query(request.url))
        target = CallTarget(snapshot.daemon, provider, tenant_id, channel, route, gateway.http)
        ctx = webhook_context(target, verify_signatures=config.verify_webhook_signatures)
        try:
            result = await provider.handle_webhook(request, ctx)
        except WebhookError as exc:
            gateway.metrics.webhooks.labels(tenant_id, provider_name, exc.result).inc()
            log.warning(
                "webhook.refused",
                tenant=tenant_id,
                provider=provider_name,
                result=exc.result,
                reason=str(exc),
            )
            raise
        except ProviderError as exc:
            # The plugin could not fetch what the callback refers to; nothing was applied, and
            # the provider calls again after a non-2xx answer.
            log.warning(
                "webhook.provider_unavailable",
                tenant=tenant_id,
                provider=provider_name,
                error_code=exc.code,
                error=exc.message,
            )
            raise ServiceUnavailable(
                f"{provider_name} could not be reached to complete this callback ({exc.code}); "
                "call again",
                code="provider_unavailable",
            ) from None

        # A StoreError here rises: the 503 makes the provider call again.
        for event in result.events:
            if isinstance(event, StatusEvent):
                applied = await gateway.store.apply_status(tenant_id, provider_name, event)
                if applied is not None and applied.moved:
                    gateway.metrics.messages.labels(
                        tenant_id, channel, provider_name, event.status
                    ).inc()
                    gateway.metrics.count_experiment(
                        tenant_id, channel, applied.experiment, applied.experiment_arm, event.status
                    )
            elif isinstance(event, InboundMessage):
                intent = self._opt_out_intent(tenant, channel, event)
                _, created = await gateway.store.add_inbound(
                    tenant_id, channel, provider_name, event, opt_out=intent
                )
                if created:
                    gateway.metrics.inbound.labels(tenant_id, channel, provider_name).inc()
                    if intent is not None:
                        self._count_suppression(tenant_id, channel, intent, "keyword")
            elif isinstance(event, RecipientOptOut):
                await self._provider_opt_out(tenant_id, channel, provider_name, event)
        gateway.metrics.webhooks.labels(tenant_id, provider_name, "accepted").inc()
        log.info(
            "webhook.accepted", tenant=tenant_id, provider=provider_name, events=len(result.events)
        )
        return WebhookOutcome(result.response, len(result.events))

    # -- suppressions (SPEC section 9) ---------------------------------------------------------

    def _suppression_keys(self, message: OutboundMessage) -> dict[str, str]:
        """Each recipient of a send (its to, cc and bcc) with the key its suppressions are
        kept under; the store refuses the accept if any is suppressed (SPEC section 9)."""
        kind = self.channels[message.channel].kind
        return {
            address: suppressions.address_key(kind, address)
            for address in (*message.to, *message.cc, *message.bcc)
        }

    def _opt_out_intent(
        self, tenant: TenantConfig | None, channel: str, message: InboundMessage
    ) -> Literal["stop", "start"] | None:
        """Whether an inbound sms or whatsapp text is an opt-out keyword (or lifts one)."""
        if channel not in OPT_OUT_CHANNELS or tenant is None or not message.body:
            return None
        keywords = suppressions.tenant_keywords(tenant.opt_out.stop, tenant.opt_out.start)
        intent = keywords.intent(message.body)
        return None if intent is None else intent.value

    async def _provider_opt_out(
        self, tenant_id: str, channel: str, provider: str, event: RecipientOptOut
    ) -> None:
        key = suppressions.address_key(self.channels[channel].kind, event.address)
        reason = f"{event.reason} reported by {provider}"
        if event.detail:
            reason += f": {event.detail}"
        added = await self.gateway.store.suppress(
            tenant_id, channel, key, reason=reason[:500], now=time.time()
        )
        if added:
            self._count_suppression(tenant_id, channel, "stop", event.reason)

    def _count_suppression(self, tenant_id: str, channel: str, intent: str, source: str) -> None:
        action = "suppressed" if intent == "stop" else "unsuppressed"
        self.gateway.metrics.suppressions.labels(tenant_id, channel, action, source).inc()
        log.info("suppression." + action, tenant=tenant_id, channel=channel, source=source)

    def _suppression_address(self, channel: str, address: str) -> str:
        """An address given to the suppressions API, checked as a send's would be."""
        self._channel(channel)
        kind = self.channels[channel].kind
        key = suppressions.address_key(kind, address)
        try:
            self.channels[channel].check_address(key)
        except ValueError as exc:
            raise ValidationFailed(f"address: {exc}", field="address") from None
        return key

    async def suppressions(
        self,
        principal: Principal,
        tenant_id: str,
        *,
        channel: str | None,
        after: int | None,
        limit: int,
    ) -> Page[SuppressionRecord]:
        self.tenant_entry(principal, tenant_id)
        if channel is not None:
            self._channel(channel)
        records = await self.gateway.store.list_suppressions(
            tenant_id, channel=channel, after_seq=after, limit=limit + 1
        )
        return Page.of(records, limit)

    async def suppress(
        self, principal: Principal, tenant_id: str, data: dict[str, Any]
    ) -> tuple[str, str, bool]:
        """Add an address to the tenant's list; returns (channel, address as kept, created)."""
        self.tenant_entry(principal, tenant_id)
        try:
            body = SuppressionBody.model_validate(data)
        except ValidationError as exc:
            raise validation_failed(exc) from None
        if body.channel not in self.channels:
            names = ", ".join(self.channels.names)
            raise ValidationFailed(f"channel: must be one of {names}", field="channel")
        address = self._suppression_address(body.channel, body.address)
        reason = body.reason or f"added through the API (key sha256:{principal.key_id})"
        created = await self.gateway.store.suppress(
            tenant_id, body.channel, address, reason=reason, now=time.time()
        )
        if created:
            self._count_suppression(tenant_id, body.channel, "stop", "api")
        return body.channel, address, created

    async def unsuppress(
        self, principal: Principal, tenant_id: str, channel: str, address: str
    ) -> None:
        self.tenant_entry(principal, tenant_id)
        key = self._suppression_address(channel, address)
        if not await self.gateway.store.unsuppress(tenant_id, channel, key):
            raise NotFound(
                f"{key} is not on the {channel} suppression list", code="suppression_not_found"
            )
        self._count_suppression(tenant_id, channel, "start", "api")

    # -- events (SPEC section 8) ---------------------------------------------------------------

    async def events(
        self, principal: Principal, tenant_id: str, *, after: int | None, limit: int
    ) -> Page[EventRecord]:
        """The tenant's events oldest first, with each endpoint's delivery state."""
        self.tenant_entry(principal, tenant_id)
        records = await self.gateway.store.list_events(tenant_id, after_seq=after, limit=limit + 1)
        return Page.of(records, limit)

    async def endpoints(self, principal: Principal, tenant_id: str) -> list[EndpointHealth]:
        """The tenant's configured endpoints, each with its deliveries pending and given up and
        its last attempt."""
        tenant = self.tenant(principal, tenant_id)
        urls = [hook.url for hook in tenant.webhooks]
        return await self.gateway.store.endpoint_health(tenant_id, urls)

    # -- experiments (SPEC section 10) ---------------------------------------------------------

    async def experiments(self, principal: Principal, tenant_id: str) -> list[ExperimentResult]:
        """Per channel and experiment of the tenant: each arm's counts, delivery rate and
        latency, and whether the arms' delivery rates differ (a two-proportion test). The
        channel's current experiment shows every configured arm (with zeros before its first
        message); an experiment no longer configured still shows what its messages did."""
        tenant = self.tenant(principal, tenant_id)
        found = await self.gateway.store.experiment_results(tenant_id)
        grouped: dict[tuple[str, str], dict[str, ArmResult]] = {}
        for found_arm in found:
            grouped.setdefault((found_arm.channel, found_arm.experiment), {})[found_arm.arm] = (
                found_arm
            )
        configured: dict[tuple[str, str], ExperimentConfig] = {
            (channel, config.experiment.name): config.experiment
            for channel, config in tenant.channels.items()
            if config.experiment is not None
        }
        results = []
        for key in sorted(set(grouped) | set(configured)):
            channel, name = key
            stored = grouped.get(key, {})
            config = configured.get(key)
            order = [arm.name for arm in config.arms] if config else []
            order += sorted(set(stored) - set(order))
            arms = []
            for arm_name in order:
                result = stored.get(arm_name)
                arm_config = config.arm(arm_name) if config else None
                arms.append(
                    ExperimentArm(
                        counts=ArmCounts(
                            name=arm_name,
                            messages=result.messages if result else 0,
                            sent=result.sent if result else 0,
                            delivered=result.delivered if result else 0,
                            failed=result.failed if result else 0,
                        ),
                        weight=arm_config.weight if arm_config else None,
                        provider=arm_config.provider if arm_config else None,
                        latency_p50_ms=result.latency_p50_ms if result else None,
                        latency_p95_ms=result.latency_p95_ms if result else None,
                    )
                )
            p_value = experiment_p_value([arm.counts for arm in arms])
            results.append(
                ExperimentResult(
                    channel=channel,
                    name=name,
                    active=config is not None,
                    arms=tuple(arms),
                    p_value=p_value,
                    significant=significant(p_value),
                )
            )
        return results

    # -- health --------------------------------------------------------------------------------

    async def readiness(self) -> tuple[bool, Mapping[str, bool]]:
        """Ready when the configuration is loaded, the store can be read and written, every
        provider call's result has been recorded, and the daemon accepts sends (not while it
        drains on shutdown)."""
        gateway = self.gateway
        checks = {"config": gateway.registry.loaded, "store": True, "delivery": True}
        try:
            await gateway.store.ping()
        except Exception:  # a store that cannot answer (or be written), or is not open yet
            checks["store"] = False
        if gateway.accepting:
            checks["delivery"] = gateway.worker.unwritten == 0
        return all(checks.values()) and gateway.accepting, checks


def _unwritable(exc: OSError) -> Conflict | ServiceUnavailable:
    """The tenant's file could not be written: a read-only config dir (a Kubernetes ConfigMap,
    a shared volume mounted read-only) is the operator's choice, said as 409
    ``config_read_only``; anything else (a full disk) is a 503 to try again. Nothing changed."""
    log.warning("config.write_failed", error=exc.strerror, errno=exc.errno)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return Conflict(
            "the configuration directory is read-only on this node: change the tenant's file"
            " where it is kept (the ConfigMap or shared volume) instead",
            code="config_read_only",
        )
    return ServiceUnavailable(
        f"the tenant's file could not be written ({exc.strerror}); nothing was changed",
        code="config_write_failed",
    )


def _path_and_query(url: str) -> str:
    """``/messaging/webhook/sms?tenant_id=...`` of an absolute URL."""
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


def _request_field(issue_path: str) -> str:
    """``channels.sms.credentials.authToken`` -> ``credentials.authToken`` (the body's names)."""
    parts = issue_path.split(".")
    if len(parts) >= 3 and parts[0] == "channels":
        return ".".join(parts[2:])
    return issue_path


def _idempotency_claim(
    key: str, channel: str, tenant_id: str, data: Mapping[str, Any], now: float
) -> IdempotencyClaim:
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise ValidationFailed(
            f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} characters", field="Idempotency-Key"
        )
    # The tenant id was taken out of ``data``: how the client named the tenant (tenant_id,
    # tenantId or implied by its key) does not make a retry a different request.
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(f"{channel}\n{tenant_id}\n".encode() + canonical).hexdigest()
    return IdempotencyClaim(key=key, request_hash=digest, expires_at=now + IDEMPOTENCY_TTL)


def _suppressed(
    message: OutboundMessage, recipients: dict[str, str], keys: list[str]
) -> RecipientSuppressed:
    """422 ``recipient_suppressed`` naming every suppressed address of the send, in the field
    (to, cc, bcc) of the first."""
    found = set(keys)
    named = [address for address, key in recipients.items() if key in found]
    fields = {"to": message.to, "cc": message.cc, "bcc": message.bcc}
    first = next(name for name, addresses in fields.items() if set(addresses) & set(named))
    return RecipientSuppressed(named, field=first)
