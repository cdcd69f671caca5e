"""GET /messaging/messages/{id}, POST .../retry and POST .../cancel."""

from __future__ import annotations

from starlette.requests import Request

from pipecored.api.context import authenticated
from pipecored.api.responses import JSONResponse
from pipecored.api.serializers import message_detail


async def get_message(request: Request) -> JSONResponse:
    caller = authenticated(request)
    record = await caller.service.message(caller.principal, request.path_params["message_id"])
    return JSONResponse(message_detail(record))


async def retry_message(request: Request) -> JSONResponse:
    caller = authenticated(request)
    record = await caller.service.retry(caller.principal, request.path_params["message_id"])
    return JSONResponse(message_detail(record), status_code=202)


async def cancel_message(request: Request) -> JSONResponse:
    caller = authenticated(request)
    record = await caller.service.cancel(caller.principal, request.path_params["message_id"])
    return JSONResponse(message_detail(record))
