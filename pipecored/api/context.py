"""What every authenticated route starts with: the caller, and the service to ask."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from starlette.requests import Request

from pipecored.access import Principal
from pipecored.api.auth import authenticate
from pipecored.errors import RateLimited, Unauthorized
from pipecored.gateway import Gateway
from pipecored.service import Service

log = structlog.get_logger("pipecored.api")

# The ASGI scope key of the dict whose items RequestLog adds to the request's log line.
LOG_FIELDS = "pipecored.log_fields"


def log_fields(request: Request, **fields: object) -> None:
    """Add fields (tenant, message id) to this request's one log line."""
    line = request.scope.get(LOG_FIELDS)
    if line is not None:
        line.update(fields)


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def service_of(request: Request) -> Service:
    return gateway_of(request).service


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: who it acts as, and the service it calls."""

    principal: Principal
    service: Service


def authenticated(request: Request) -> Caller:
    """Authenticate the request's key and apply its tenant's API rate limit (429). Wrong keys
    are counted, logged with the client's address, and throttled per address."""
    gateway = gateway_of(request)
    snapshot = gateway.registry.snapshot
    address = request.client.host if request.client else "unknown"
    limit = snapshot.daemon.auth.failed_key_limit
    throttled = gateway.auth_failures.wait(address, limit)
    if throttled > 0:
        gateway.metrics.auth_failures.labels("throttled").inc()
        raise RateLimited(
            "too many requests with a wrong key from this address", retry_after=throttled
        )
    try:
        principal = authenticate(request, snapshot)
    except Unauthorized as exc:
        gateway.auth_failures.failed(address, limit)
        gateway.metrics.auth_failures.labels(exc.code).inc()
        log.warning("auth.failed", client=address, reason=exc.code, path=request.url.path)
        raise
    if principal.tenant_id is not None:
        tenant = snapshot.tenant(principal.tenant_id)
        if tenant is not None and tenant.rate_limit is not None:
            wait = gateway.api_limits.take(principal.tenant_id, tenant.rate_limit)
            if wait > 0:
                raise RateLimited(
                    f"over this tenant's limit of {tenant.rate_limit.per_second:g} requests/s",
                    retry_after=wait,
                )
    return Caller(principal, gateway.service)
