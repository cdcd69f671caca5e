"""POST /messaging/send/{channel}: accept a message (stored durably before the 202)."""

from __future__ import annotations

from starlette.requests import Request

from pipecored.api.bodies import read_json_object, take_tenant_id
from pipecored.api.context import authenticated, log_fields
from pipecored.api.responses import JSONResponse
from pipecored.api.serializers import accepted


async def send(request: Request) -> JSONResponse:
    caller = authenticated(request)
    service = caller.service
    data = await read_json_object(request, limit=service.body_limit())
    result = await service.accept(
        caller.principal,
        request.path_params["channel"],
        data,
        tenant_id=take_tenant_id(data),
        idempotency_key=request.headers.get("idempotency-key"),
    )
    record = result.record
    # Logged once, with the request's own line (RequestLog), rather than as a line of its own.
    log_fields(
        request,
        tenant=record.tenant_id,
        channel=record.channel,
        message_id=record.id,
        replayed=result.replayed,
    )
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return JSONResponse(accepted(record), status_code=202, headers=headers)
