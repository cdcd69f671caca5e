"""How messages, stats and tenant configuration look in API responses: the one place each
response shape is built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

from pipecored.api import shapes
from pipecored.config.model import ChannelConfig, RouteConfig, TenantConfig
from pipecored.config.registry import TenantEntry
from pipecored.events.worker import endpoint_label
from pipecored.masking import mask
from pipecored.provider import Provider
from pipecored.store import (
    AttemptRecord,
    EventRecord,
    MessageRecord,
    StoreStats,
    SuppressionRecord,
)
from pipecored.suppressions import DEFAULT_START_KEYWORDS, DEFAULT_STOP_KEYWORDS

if TYPE_CHECKING:
    from pipecored.service import ExperimentResult


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# An inbound message's text in a log page: a page of 500 inbound messages of a megabyte each
# would otherwise be half a gigabyte in one response. GET /messaging/messages/{id} has it whole.
LIST_BODY_CHARS = 1000


def log_item(record: MessageRecord, *, body_chars: int | None = LIST_BODY_CHARS) -> shapes.LogItem:
    item: shapes.LogItem = {
        "id": record.id,
        "tenantId": record.tenant_id,
        "channel": record.channel,
        "direction": record.direction,
        "provider": record.provider,
        "to": record.to,
        "from": record.sender,
        "status": record.status,
        "attemptCount": record.attempt_count,
        "providerMessageId": record.provider_message_id,
        "errorCode": record.error_code,
        "errorMessage": record.error_message,
        "createdAt": iso(record.created_at),
        "updatedAt": iso(record.updated_at),
    }
    if record.direction == "inbound":
        body = record.body_preview
        if body is not None and body_chars is not None and len(body) > body_chars:
            item["body"] = body[:body_chars]
            item["bodyTruncated"] = True
        else:
            item["body"] = body
        media = record.payload.get("media")
        if media:
            item["media"] = media
    if record.experiment is not None and record.experiment_arm is not None:
        item["experiment"] = record.experiment
        item["experimentArm"] = record.experiment_arm
    return item


def accepted(record: MessageRecord) -> shapes.Accepted:
    return {
        "id": record.id,
        "status": "queued",
        "tenantId": record.tenant_id,
        "channel": record.channel,
    }


def stats_view(tenant_id: str, stats: StoreStats) -> shapes.Stats:
    latency = stats.latency_ms
    return {
        "tenantId": tenant_id,
        "total": stats.total,
        "byStatus": dict(stats.by_status),
        "byChannel": dict(stats.by_channel),
        "byProvider": dict(stats.by_provider),
        "deliveryRate": stats.delivery_rate,
        "latencyMs": {
            "p50": latency.get("p50"),
            "p95": latency.get("p95"),
            "p99": latency.get("p99"),
        },
    }


def attempt_item(attempt: AttemptRecord) -> shapes.Attempt:
    return {
        "provider": attempt.provider,
        "startedAt": iso(attempt.started_at),
        "outcome": attempt.outcome,
        "httpStatus": attempt.http_status,
        "errorCode": attempt.error_code,
        "errorMessage": attempt.error_message,
        "durationMs": attempt.duration_ms,
    }


def message_detail(record: MessageRecord) -> shapes.Message:
    detail: shapes.Message = {
        **log_item(record, body_chars=None),
        "sentAt": iso(record.sent_at),
        "nextAttemptAt": iso(record.not_before)
        if record.status in ("queued", "scheduled")
        else None,
        "attempts": [attempt_item(a) for a in record.attempts],
    }
    return detail


def _route_view(route: RouteConfig, providers: Mapping[str, Provider]) -> shapes.Route:
    provider = providers.get(route.provider)
    secret = provider.secret_names() if provider else frozenset(route.credentials)
    view: shapes.Route = {
        "provider": route.provider,
        "credentials": {
            name: mask(value) if name in secret else value
            for name, value in route.credentials.items()
        },
    }
    if route.base_url:
        view["baseUrl"] = route.base_url
    return view


def _channel_view(channel: ChannelConfig, providers: Mapping[str, Provider]) -> shapes.Channel:
    route = _route_view(channel, providers)
    view: shapes.Channel = {
        "provider": route["provider"],
        "credentials": route["credentials"],
        "isActive": channel.is_active,
        "fallbacks": [_route_view(f, providers) for f in channel.fallbacks],
    }
    if "baseUrl" in route:
        view["baseUrl"] = route["baseUrl"]
    if channel.rate_limit is not None:
        view["rateLimit"] = {
            "perSecond": channel.rate_limit.per_second,
            "burst": channel.rate_limit.burst,
        }
    if channel.experiment is not None:
        view["experiment"] = {
            "name": channel.experiment.name,
            "arms": [
                {**_route_view(arm, providers), "name": arm.name, "weight": arm.weight}
                for arm in channel.experiment.arms
            ],
        }
    return view


def experiments_view(tenant_id: str, results: Sequence[ExperimentResult]) -> shapes.Experiments:
    return {
        "tenantId": tenant_id,
        "experiments": [
            {
                "channel": result.channel,
                "name": result.name,
                "active": result.active,
                "arms": [
                    {
                        "name": arm.counts.name,
                        "weight": arm.weight,
                        "provider": arm.provider,
                        "messages": arm.counts.messages,
                        "sent": arm.counts.sent,
                        "delivered": arm.counts.delivered,
                        "failed": arm.counts.failed,
                        "deliveryRate": arm.counts.delivery_rate,
                        "latencyMs": {"p50": arm.latency_p50_ms, "p95": arm.latency_p95_ms},
                    }
                    for arm in result.arms
                ],
                "pValue": result.p_value,
                "significant": result.significant,
            }
            for result in results
        ],
    }


def tenant_view(entry: TenantEntry, providers: Mapping[str, Provider]) -> shapes.TenantConfig:
    config: TenantConfig | None = entry.config
    view: shapes.TenantConfig = {
        "tenantId": entry.tenant_id,
        "name": config.name if config else None,
        "channels": {}
        if config is None
        else {name: _channel_view(c, providers) for name, c in config.channels.items()},
    }
    if config is not None and config.templates:
        view["templates"] = config.templates
    if config is not None and config.quiet_hours is not None:
        quiet = config.quiet_hours
        view["quietHours"] = {
            "timezone": quiet.timezone,
            "start": quiet.start,
            "end": quiet.end,
            "channels": list(quiet.channels),
        }
    if config is not None and config.webhooks:
        view["webhooks"] = [
            {
                "url": endpoint_label(hook.url),
                "secret": mask(hook.secret),
                "events": None if hook.events is None else list(hook.events),
            }
            for hook in config.webhooks
        ]
    if config is not None:
        opt_out = config.opt_out
        view["optOut"] = {
            # an empty list of the tenant's is none in force, not the default
            "stop": list(DEFAULT_STOP_KEYWORDS if opt_out.stop is None else opt_out.stop),
            "start": list(DEFAULT_START_KEYWORDS if opt_out.start is None else opt_out.start),
        }
    if entry.error is not None:
        view["configError"] = {
            "message": "the tenant's file is invalid; the last good version is in use"
            if config is not None
            else "the tenant's file is invalid and no earlier version was loaded",
            "issues": [str(issue) for issue in entry.error.issues],
        }
    return view


def event_item(record: EventRecord) -> shapes.Event:
    body = orjson.loads(record.body)
    return {
        "id": record.id,
        "type": record.type,
        "timestamp": body["timestamp"],
        "data": body["data"],
        "deliveries": [
            {
                "endpoint": endpoint_label(d.endpoint),
                "state": d.state,
                "attempts": d.attempts,
                "nextAttemptAt": iso(d.next_attempt_at),
                "lastStatusCode": d.last_status_code,
                "lastError": d.last_error,
                "updatedAt": iso(d.updated_at),
            }
            for d in record.deliveries
        ],
    }


def suppression_item(record: SuppressionRecord) -> shapes.Suppression:
    return {
        "channel": record.channel,
        "address": record.address,
        "reason": record.reason,
        "createdAt": iso(record.created_at),
    }
