"""The stack's ceiling with durability on: the bare endpoint plus pipecored's own SQLite store.

It parses the send body, stores it as a queued message through :class:`SQLiteStore` (WAL,
``synchronous=FULL``, group commit: the store pipecored runs on) and answers 202 once the
message is committed. No authentication, tenant lookup, validation, metrics, logging or
delivery: what is left between this and pipecored is the gateway's own work per request.

    BENCH_DB=/tmp/durable.db python -m uvicorn bench.durable_app:app --loop uvloop \
        --http httptools --port 8083
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipecored.store import NewMessage, new_message_id
from pipecored.store.sqlite import SQLiteStore

store = SQLiteStore(os.environ.get("BENCH_DB", "durable.db"))


async def send(request: Request) -> Response:
    data = await request.json()
    await store.accept(
        NewMessage(
            id=new_message_id(),
            tenant_id="t00000",
            channel=request.path_params["channel"],
            to=data["to"],
            sender=None,
            payload=data,
            created_at=time.time(),
        )
    )
    return Response(status_code=202)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await store.open()
    try:
        yield
    finally:
        await store.close()


app = Starlette(
    routes=[Route("/messaging/send/{channel}", send, methods=["POST"])], lifespan=lifespan
)
