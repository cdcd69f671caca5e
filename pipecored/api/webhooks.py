"""/messaging/webhook/{channel}: provider callbacks, authenticated by the provider's signature.

The plugin verifies and parses; the host finds the tenant's credentials for that provider,
applies the resulting status events and inbound messages to the store, and counts the result.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from starlette.requests import Request
from starlette.responses import Response

from pipecored.api.bodies import read_body
from pipecored.api.context import gateway_of
from pipecored.api.responses import JSONResponse
from pipecored.delivery import provider_settings, route_base_url
from pipecored.errors import (
    NotFound,
    ProviderError,
    ServiceUnavailable,
    StoreError,
    ValidationFailed,
    WebhookError,
)
from pipecored.provider import (
    CHANNELS,
    InboundMessage,
    StatusEvent,
    WebhookContext,
    WebhookRequest,
)

log = structlog.get_logger("pipecored.webhooks")


def _called_url(request: Request, public_url: str | None) -> str:
    if not public_url:
        return str(request.url)
    query = request.url.query
    return public_url + request.url.path + (f"?{query}" if query else "")


async def webhook(request: Request) -> Response:
    gateway = gateway_of(request)
    snapshot = gateway.registry.snapshot
    channel = request.path_params["channel"]
    if channel not in CHANNELS:
        raise NotFound(f"unknown channel {channel!r}", code="unknown_channel")
    tenant_id = request.query_params.get("tenant_id") or request.query_params.get("tenantId")
    if not tenant_id:
        raise ValidationFailed("tenant_id: required query parameter", field="tenant_id")
    tenant = snapshot.tenant(tenant_id)
    if tenant is None:
        raise NotFound(f"unknown tenant {tenant_id!r}", code="tenant_not_found")
    config = tenant.channels.get(channel)
    if config is None:
        raise NotFound(
            f"tenant {tenant_id!r} has no {channel} channel", code="channel_not_configured"
        )
    name = request.query_params.get("provider") or config.provider
    route = next((r for r in config.routes if r.provider == name), None)
    provider = gateway.providers.get(name)
    if route is None or provider is None:
        raise NotFound(
            f"provider {name!r} is not configured for this channel",
            code="provider_not_configured",
        )

    body = await read_body(request, limit=snapshot.daemon.server.max_body_bytes)
    incoming = WebhookRequest(
        method=request.method,
        url=_called_url(request, snapshot.daemon.server.public_url),
        headers={k.lower(): v for k, v in request.headers.items()},
        query=list(request.query_params.multi_items()),
        body=body,
        received_at=datetime.now(UTC),
    )
    ctx = WebhookContext(
        tenant_id=tenant_id,
        channel=channel,
        credentials=route.credentials,
        settings=provider_settings(snapshot.daemon, provider),
        verify_signatures=config.verify_webhook_signatures,
        http=gateway.http,
        base_url=route_base_url(snapshot.daemon, provider, route),
        timeout=snapshot.daemon.delivery.timeout,
    )
    try:
        result = await provider.handle_webhook(incoming, ctx)
    except WebhookError as exc:
        gateway.metrics.webhooks.labels(tenant_id, name, exc.result).inc()
        log.warning(
            "webhook.refused", tenant=tenant_id, provider=name, result=exc.result, reason=str(exc)
        )
        code = "bad_signature" if exc.result == "bad_signature" else "invalid_webhook"
        message = "the signature does not verify" if code == "bad_signature" else str(exc) or code
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=exc.status)
    except ProviderError as exc:
        # The plugin could not fetch what the callback refers to; nothing was applied, and the
        # provider calls again after a non-2xx answer.
        log.warning(
            "webhook.provider_unavailable",
            tenant=tenant_id,
            provider=name,
            error_code=exc.code,
            error=exc.message,
        )
        raise ServiceUnavailable(
            f"{name} could not be reached to complete this callback ({exc.code}); call again",
            code="provider_unavailable",
        ) from None

    try:
        for event in result.events:
            if isinstance(event, StatusEvent):
                applied = await gateway.store.apply_status(tenant_id, name, event)
                if applied is not None and applied.moved:
                    gateway.metrics.messages.labels(tenant_id, channel, name, event.status).inc()
            elif isinstance(event, InboundMessage):
                _, created = await gateway.store.add_inbound(tenant_id, channel, name, event)
                if created:
                    gateway.metrics.inbound.labels(tenant_id, channel, name).inc()
    except StoreError:
        # The provider retries a callback that did not get a 2xx.
        raise ServiceUnavailable(
            "the message store is unavailable", code="store_unavailable"
        ) from None
    gateway.metrics.webhooks.labels(tenant_id, name, "accepted").inc()
    log.info("webhook.accepted", tenant=tenant_id, provider=name, events=len(result.events))
    return Response(
        result.response.body,
        status_code=result.response.status,
        media_type=result.response.content_type,
    )
