"""/healthz (the process answers), /readyz (config loaded, store reachable), /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from pipecored.api.context import gateway_of
from pipecored.api.responses import JSONResponse
from pipecored.errors import StoreError


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    gateway = gateway_of(request)
    checks = {"config": gateway.registry.loaded, "store": True}
    try:
        await gateway.store.ping()
    except (StoreError, AssertionError):
        checks["store"] = False
    ready = all(checks.values()) and gateway.accepting
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


async def metrics(request: Request) -> Response:
    gateway = gateway_of(request)
    return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)
