"""The suppressions API (SPEC section 9): list, add and remove a tenant's opted-out addresses."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pipecored.api.bodies import read_json_object
from pipecored.api.context import authenticated
from pipecored.api.message_log import decode_cursor, encode_cursor, page_limit
from pipecored.api.responses import JSONResponse
from pipecored.api.serializers import suppression_item


async def list_suppressions(request: Request) -> JSONResponse:
    caller = authenticated(request)
    cursor = request.query_params.get("cursor")
    page = await caller.service.suppressions(
        caller.principal,
        request.path_params["tenant_id"],
        channel=request.query_params.get("channel"),
        after=decode_cursor(cursor) if cursor else None,
        limit=page_limit(request),
    )
    return JSONResponse(
        {
            "items": [suppression_item(r) for r in page.items],
            "nextCursor": encode_cursor(page.next_seq) if page.next_seq is not None else None,
        }
    )


async def add_suppression(request: Request) -> JSONResponse:
    caller = authenticated(request)
    service = caller.service
    tenant_id = request.path_params["tenant_id"]
    data = await read_json_object(request, limit=service.body_limit())
    channel, address, created = await service.suppress(caller.principal, tenant_id, data)
    return JSONResponse(
        {"tenantId": tenant_id, "channel": channel, "address": address, "created": created},
        status_code=201 if created else 200,
    )


async def remove_suppression(request: Request) -> Response:
    caller = authenticated(request)
    params = request.path_params
    await caller.service.unsuppress(
        caller.principal, params["tenant_id"], params["channel"], params["address"]
    )
    return Response(status_code=204)
