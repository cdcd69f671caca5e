"""GET /messaging/config/{tenant} and POST /messaging/config/provider."""

from __future__ import annotations

from starlette.requests import Request

from pipecored.api.bodies import read_json_object, take_tenant_id
from pipecored.api.context import authenticated
from pipecored.api.responses import JSONResponse
from pipecored.api.serializers import tenant_view


async def get_config(request: Request) -> JSONResponse:
    caller = authenticated(request)
    tenant_id = request.path_params["tenant_id"]
    entry = caller.service.tenant_entry(caller.principal, tenant_id)
    return JSONResponse(tenant_view(entry, caller.service.gateway.providers))


async def set_provider(request: Request) -> JSONResponse:
    caller = authenticated(request)
    service = caller.service
    data = await read_json_object(request, limit=service.body_limit())
    change = await service.set_provider(caller.principal, take_tenant_id(data), data)
    return JSONResponse(
        tenant_view(change.entry, service.gateway.providers),
        status_code=201 if change.created else 200,
    )
