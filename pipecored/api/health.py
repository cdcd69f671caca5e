"""/healthz (the process answers), /readyz (config loaded, store reachable), /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from pipecored.api.context import gateway_of, service_of
from pipecored.api.responses import JSONResponse


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    ready, checks = await service_of(request).readiness()
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": dict(checks)},
        status_code=200 if ready else 503,
    )


async def metrics(request: Request) -> Response:
    gateway = gateway_of(request)
    return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)
