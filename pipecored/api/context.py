"""What every authenticated route starts with: the caller, and the service to ask."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from pipecored.access import Principal
from pipecored.api.auth import authenticate
from pipecored.errors import RateLimited
from pipecored.gateway import Gateway
from pipecored.service import Service

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
    """Authenticate the request's key and apply its tenant's API rate limit (429)."""
    gateway = gateway_of(request)
    snapshot = gateway.registry.snapshot
    principal = authenticate(request, snapshot)
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
