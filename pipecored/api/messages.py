"""GET /messaging/messages/{id} and POST /messaging/messages/{id}/retry."""

from __future__ import annotations

import time

from starlette.requests import Request

from pipecored.api.context import Call, begin
from pipecored.api.responses import JSONResponse
from pipecored.api.views import message_detail
from pipecored.errors import Conflict, NotFound, ServiceUnavailable, StoreError
from pipecored.store import MessageRecord


async def _visible(call: Call, message_id: str) -> MessageRecord:
    """The message if this caller may see it; another tenant's message is 404 as if absent."""
    try:
        record = await call.gateway.store.get(message_id)
    except StoreError:
        raise ServiceUnavailable(
            "the message store is unavailable", code="store_unavailable"
        ) from None
    if record is None or not call.principal.may_act_as(record.tenant_id):
        raise NotFound(f"no message {message_id!r}", code="message_not_found")
    return record


async def get_message(request: Request) -> JSONResponse:
    call = begin(request)
    record = await _visible(call, request.path_params["message_id"])
    return JSONResponse(message_detail(record))


async def retry_message(request: Request) -> JSONResponse:
    call = begin(request)
    record = await _visible(call, request.path_params["message_id"])
    if record.direction != "outbound" or record.status != "failed":
        raise Conflict(
            f"only failed outbound messages can be retried (this one is {record.status})",
            code="not_retryable",
        )
    try:
        requeued = await call.gateway.store.requeue(record.id, now=time.time())
    except StoreError:
        raise ServiceUnavailable(
            "the message store is unavailable", code="store_unavailable"
        ) from None
    if requeued is None:
        raise Conflict("the message is no longer failed", code="not_retryable")
    call.gateway.worker.wake()
    return JSONResponse(message_detail(requeued), status_code=202)
