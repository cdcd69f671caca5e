"""The Starlette application: routes, error shape, request logging, lifespan."""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipecored.api.context import LOG_FIELDS
from pipecored.api.events import get_events
from pipecored.api.experiments import get_experiments
from pipecored.api.health import healthz, metrics, readyz
from pipecored.api.message_log import get_logs, get_stats
from pipecored.api.messages import cancel_message, get_message, retry_message
from pipecored.api.openapi import openapi_json
from pipecored.api.responses import JSONResponse
from pipecored.api.send import send
from pipecored.api.suppressions import add_suppression, list_suppressions, remove_suppression
from pipecored.api.tenant_config import get_config, set_provider
from pipecored.api.webhooks import webhook
from pipecored.console import console_root, create_console
from pipecored.errors import (
    ApiError,
    PipecoreError,
    ServiceUnavailable,
    StoreError,
    WebhookError,
)
from pipecored.gateway import Gateway

log = structlog.get_logger("pipecored.api")

ROUTES = [
    Route("/messaging/send/{channel}", send, methods=["POST"]),
    Route("/messaging/messages/{message_id}", get_message, methods=["GET"]),
    Route("/messaging/messages/{message_id}/retry", retry_message, methods=["POST"]),
    Route("/messaging/messages/{message_id}/cancel", cancel_message, methods=["POST"]),
    Route("/messaging/config/provider", set_provider, methods=["POST"]),
    Route("/messaging/config/{tenant_id}", get_config, methods=["GET"]),
    Route("/messaging/logs/{tenant_id}", get_logs, methods=["GET"]),
    Route("/messaging/stats/{tenant_id}", get_stats, methods=["GET"]),
    Route("/messaging/webhook/{channel}", webhook, methods=["GET", "POST"]),
    Route("/messaging/events/{tenant_id}", get_events, methods=["GET"]),
    Route("/messaging/experiments/{tenant_id}", get_experiments, methods=["GET"]),
    Route("/messaging/suppressions/{tenant_id}", list_suppressions, methods=["GET"]),
    Route("/messaging/suppressions/{tenant_id}", add_suppression, methods=["POST"]),
    Route(
        "/messaging/suppressions/{tenant_id}/{channel}/{address}",
        remove_suppression,
        methods=["DELETE"],
    ),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
]


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message, **extra}
    return JSONResponse({"error": error}, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    field = getattr(exc, "field", None)
    extra: dict[str, Any] = {"field": field} if field else {}
    extra.update(getattr(exc, "details", {}))
    return error_response(exc.status, exc.code, exc.message, exc.headers, **extra)


async def _store_error(request: Request, exc: Exception) -> Response:
    """The one place a store failure becomes an answer: 503, and nothing was changed, so the
    client (or the provider, for a callback) can send the same request again."""
    log.error("api.store_unavailable", path=request.url.path, error=str(exc))
    unavailable = ServiceUnavailable(
        "the message store is unavailable; nothing was stored or changed, try again",
        code="store_unavailable",
    )
    return await _api_error(request, unavailable)


async def _webhook_error(request: Request, exc: Exception) -> Response:
    """A provider callback refused by its plugin; the reason is logged, not told to the caller
    when the signature is what failed."""
    assert isinstance(exc, WebhookError)
    if exc.result == "bad_signature":
        return error_response(exc.status, "bad_signature", "the signature does not verify")
    return error_response(exc.status, "invalid_webhook", str(exc) or "invalid_webhook")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error_response(
        exc.status_code,
        codes.get(exc.status_code, "http_error"),
        str(exc.detail),
        dict(exc.headers) if exc.headers else None,
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("api.internal_error", path=request.url.path)
    return error_response(500, "internal_error", "internal error")


class RequestLog:
    """Log each request with its status and duration (pure ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        # Handlers add what they learn (tenant, message id) to this request's log line.
        fields: dict[str, Any] = {}
        scope[LOG_FIELDS] = fields
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            path = scope["path"]
            if path not in ("/metrics", "/healthz", "/readyz"):
                log.info(
                    "http.request",
                    method=scope["method"],
                    path=path,
                    status=status,
                    duration_ms=round((time.perf_counter() - start) * 1000, 2),
                    **fields,
                )


class GatewayLifespan:
    """Start the gateway with the server and stop it with the server (the ASGI lifespan).

    Handled here rather than by Starlette's lifespan, which turns any start-up error into a
    traceback: a start-up that fails for a reason the operator must fix (another daemon owns
    the store file, the database is unreachable) is one log line and a non-zero exit.
    """

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        await receive()  # lifespan.startup
        try:
            await self.gateway.start()
        except PipecoreError as exc:
            log.error("pipecored.start_failed", error=str(exc))
            await self.gateway.stop()
            await send({"type": "lifespan.startup.failed", "message": ""})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await self.gateway.stop()
        finally:
            await send({"type": "lifespan.shutdown.complete"})


def create_app(gateway: Gateway) -> Starlette:
    # The web console (HTML, its own sessions and error pages) beside the API routes.
    console = [Route("/console", console_root), Mount("/console", app=create_console(gateway))]
    app = Starlette(
        routes=[*ROUTES, *console],
        exception_handlers={
            ApiError: _api_error,
            StoreError: _store_error,
            WebhookError: _webhook_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    # A trailing slash is a 404 in the error shape, not a 307 whose Location is built from the
    # request's Host header.
    app.router.redirect_slashes = False
    app.state.gateway = gateway
    app.add_middleware(RequestLog)
    app.add_middleware(GatewayLifespan, gateway=gateway)
    return app
