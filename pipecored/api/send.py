"""POST /messaging/send/{channel}: validate, store durably, answer 202."""

from __future__ import annotations

import hashlib
import json
import time

import structlog
from starlette.requests import Request

from pipecored.api.bodies import json_object, read_json, send_payload, take_tenant_id
from pipecored.api.context import begin, log_fields
from pipecored.api.responses import JSONResponse
from pipecored.delivery import outbound_from_payload
from pipecored.errors import (
    Conflict,
    MessageRejected,
    NotFound,
    ServiceUnavailable,
    StoreError,
    ValidationFailed,
)
from pipecored.provider import CHANNELS
from pipecored.store import (
    IdempotencyClaim,
    IdempotencyConflict,
    MessageRecord,
    NewMessage,
    new_message_id,
)

log = structlog.get_logger("pipecored.api")

IDEMPOTENCY_TTL = 24 * 3600.0
MAX_IDEMPOTENCY_KEY = 255


def _accepted(record: MessageRecord, *, replayed: bool) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(
        {
            "id": record.id,
            "status": "queued",
            "tenantId": record.tenant_id,
            "channel": record.channel,
        },
        status_code=202,
        headers=headers,
    )


async def send(request: Request) -> JSONResponse:
    call = begin(request)
    gateway = call.gateway
    channel = request.path_params["channel"]
    if channel not in CHANNELS:
        raise NotFound(f"unknown channel {channel!r}", code="unknown_channel")
    if not gateway.accepting:
        raise ServiceUnavailable("pipecored is shutting down", code="shutting_down")

    data = json_object(await read_json(request, limit=call.snapshot.daemon.server.max_body_bytes))
    tenant_id = take_tenant_id(data) or call.principal.tenant_id
    if tenant_id is None:
        raise ValidationFailed("tenant_id: required with an admin key", field="tenant_id")
    tenant = call.tenant(tenant_id)
    config = tenant.channels.get(channel)
    if config is None:
        raise NotFound(
            f"tenant {tenant_id!r} has no {channel} channel", code="channel_not_configured"
        )
    if not config.is_active:
        raise Conflict(
            f"tenant {tenant_id!r}'s {channel} channel is inactive", code="channel_inactive"
        )

    payload, to = send_payload(channel, data)
    message_id = new_message_id()
    now = time.time()
    new = NewMessage(
        id=message_id,
        tenant_id=tenant_id,
        channel=channel,
        to=to,
        sender=payload.get("sender"),
        payload=payload,
        created_at=now,
    )
    provider = gateway.providers.get(config.provider)
    if provider is not None:
        try:
            provider.check_message(
                outbound_from_payload(message_id, tenant_id, channel, payload),
                config.credentials,
            )
        except MessageRejected as exc:
            field = "from" if exc.field == "sender" else exc.field
            raise ValidationFailed(f"{field}: {exc.message}", field=field) from None

    claim = None
    key = request.headers.get("idempotency-key")
    if key is not None:
        if not key or len(key) > MAX_IDEMPOTENCY_KEY:
            raise ValidationFailed(
                f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} characters",
                field="Idempotency-Key",
            )
        # The tenant id was taken out of ``data``: how the client named the tenant (tenant_id,
        # tenantId or implied by its key) does not make a retry a different request.
        canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        digest = hashlib.sha256(f"{channel}\n{tenant_id}\n{canonical}".encode()).hexdigest()
        claim = IdempotencyClaim(key=key, request_hash=digest, expires_at=now + IDEMPOTENCY_TTL)

    try:
        result = await gateway.store.accept(new, claim)
    except IdempotencyConflict:
        raise Conflict(
            "this Idempotency-Key was used with a different request",
            code="idempotency_key_reused",
        ) from None
    except StoreError as exc:
        log.error("api.store_unavailable", operation="accept", error=str(exc))
        raise ServiceUnavailable(
            "the message store is unavailable; the message was not accepted",
            code="store_unavailable",
        ) from None
    if not result.replayed:
        gateway.metrics.messages_accepted.labels(tenant_id, channel).inc()
        gateway.worker.wake()
    # Logged once, with the request's own line (RequestLog), rather than as a line of its own.
    log_fields(
        request,
        tenant=tenant_id,
        channel=channel,
        message_id=result.record.id,
        replayed=result.replayed,
    )
    return _accepted(result.record, replayed=result.replayed)
