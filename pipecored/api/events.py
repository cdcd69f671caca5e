"""GET /messaging/events/{tenant}: the tenant's events, oldest first, with their deliveries."""

from __future__ import annotations

from starlette.requests import Request

from pipecored.api.context import authenticated
from pipecored.api.message_log import decode_cursor, encode_cursor, page_limit
from pipecored.api.responses import JSONResponse
from pipecored.api.serializers import event_item


async def get_events(request: Request) -> JSONResponse:
    caller = authenticated(request)
    after_cursor = request.query_params.get("after")
    after = decode_cursor(after_cursor, field="after") if after_cursor else None
    page = await caller.service.events(
        caller.principal,
        request.path_params["tenant_id"],
        after=after,
        limit=page_limit(request),
    )
    # A poller continues from the last event it got (or the cursor it gave): nextCursor is
    # there even on the last page, so that it can ask again later for newer events.
    last = page.items[-1].seq if page.items else after
    return JSONResponse(
        {
            "items": [event_item(e) for e in page.items],
            "nextCursor": encode_cursor(last) if last is not None else None,
            "hasMore": page.next_seq is not None,
        }
    )
