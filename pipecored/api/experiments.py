"""GET /messaging/experiments/{tenant}: each provider experiment's arms and their results."""

from __future__ import annotations

from starlette.requests import Request

from pipecored.api.context import authenticated
from pipecored.api.responses import JSONResponse
from pipecored.api.serializers import experiments_view


async def get_experiments(request: Request) -> JSONResponse:
    caller = authenticated(request)
    tenant_id = request.path_params["tenant_id"]
    results = await caller.service.experiments(caller.principal, tenant_id)
    return JSONResponse(experiments_view(tenant_id, results))
