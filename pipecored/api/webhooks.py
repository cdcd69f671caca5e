"""/messaging/webhook/{channel}: provider callbacks, authenticated by the provider's signature
(the plugin verifies it; the service applies what the callback says)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from pipecored.api.bodies import read_body
from pipecored.api.context import service_of
from pipecored.provider import WebhookRequest


async def webhook(request: Request) -> Response:
    service = service_of(request)
    query = request.query_params
    tenant_id, provider = service.webhook_target(
        query.get("tenant_id") or query.get("tenantId"),
        request.path_params["channel"],
        query.get("provider"),
    )
    body = await read_body(request, limit=service.body_limit())
    incoming = WebhookRequest(
        method=request.method,
        url=str(request.url),
        headers={k.lower(): v for k, v in request.headers.items()},
        query=list(query.multi_items()),
        body=body,
        received_at=datetime.now(UTC),
    )
    outcome = await service.handle_webhook(
        tenant_id, request.path_params["channel"], provider, incoming
    )
    answer = outcome.response
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type)
