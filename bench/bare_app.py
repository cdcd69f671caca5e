"""The stack's ceiling: a bare Starlette endpoint that parses the send body and answers 202.

Run by the benchmark exactly as pipecored runs (uvicorn, uvloop, httptools):

    python -m uvicorn bench.bare_app:app --loop uvloop --http httptools --port 8082
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def send(request: Request) -> Response:
    await request.json()
    return Response(status_code=202)


app = Starlette(routes=[Route("/messaging/send/{channel}", send, methods=["POST"])])
