"""How messages, stats and tenant configuration look in API responses: the one place each
response shape is built."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipecored.config.model import RouteConfig, TenantConfig
from pipecored.config.registry import TenantEntry
from pipecored.masking import mask
from pipecored.provider import Provider
from pipecored.store import AttemptRecord, MessageRecord, StoreStats


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# An inbound message's text in a log page: a page of 500 inbound messages of a megabyte each
# would otherwise be half a gigabyte in one response. GET /messaging/messages/{id} has it whole.
LIST_BODY_CHARS = 1000


def log_item(record: MessageRecord, *, body_chars: int | None = LIST_BODY_CHARS) -> dict[str, Any]:
    item: dict[str, Any] = {
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
    return item


def accepted(record: MessageRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "status": "queued",
        "tenantId": record.tenant_id,
        "channel": record.channel,
    }


def stats_view(tenant_id: str, stats: StoreStats) -> dict[str, Any]:
    return {
        "tenantId": tenant_id,
        "total": stats.total,
        "byStatus": dict(stats.by_status),
        "byChannel": dict(stats.by_channel),
        "byProvider": dict(stats.by_provider),
        "deliveryRate": stats.delivery_rate,
        "latencyMs": {q: stats.latency_ms.get(q) for q in ("p50", "p95", "p99")},
    }


def attempt_item(attempt: AttemptRecord) -> dict[str, Any]:
    return {
        "provider": attempt.provider,
        "startedAt": iso(attempt.started_at),
        "outcome": attempt.outcome,
        "httpStatus": attempt.http_status,
        "errorCode": attempt.error_code,
        "errorMessage": attempt.error_message,
        "durationMs": attempt.duration_ms,
    }


def message_detail(record: MessageRecord) -> dict[str, Any]:
    detail = log_item(record, body_chars=None)
    detail["sentAt"] = iso(record.sent_at)
    detail["nextAttemptAt"] = iso(record.not_before) if record.status == "queued" else None
    detail["attempts"] = [attempt_item(a) for a in record.attempts]
    return detail


def _route_view(route: RouteConfig, providers: Mapping[str, Provider]) -> dict[str, Any]:
    provider = providers.get(route.provider)
    secret = provider.secret_names() if provider else frozenset(route.credentials)
    view: dict[str, Any] = {
        "provider": route.provider,
        "credentials": {
            name: mask(value) if name in secret else value
            for name, value in route.credentials.items()
        },
    }
    if route.base_url:
        view["baseUrl"] = route.base_url
    return view


def tenant_view(entry: TenantEntry, providers: Mapping[str, Provider]) -> dict[str, Any]:
    config: TenantConfig | None = entry.config
    view: dict[str, Any] = {
        "tenantId": entry.tenant_id,
        "name": config.name if config else None,
        "channels": {},
    }
    if config is not None:
        for name, channel in config.channels.items():
            channel_view = _route_view(channel, providers)
            channel_view["isActive"] = channel.is_active
            channel_view["fallbacks"] = [_route_view(f, providers) for f in channel.fallbacks]
            if channel.rate_limit is not None:
                channel_view["rateLimit"] = channel.rate_limit.model_dump(by_alias=True)
            view["channels"][name] = channel_view
    if entry.error is not None:
        view["configError"] = {
            "message": "the tenant's file is invalid; the last good version is in use"
            if config is not None
            else "the tenant's file is invalid and no earlier version was loaded",
            "issues": [str(issue) for issue in entry.error.issues],
        }
    return view
