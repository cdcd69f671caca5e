"""What every route needs: the gateway, the configuration snapshot, the caller."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from pipecored.api.auth import Principal, authenticate, require_tenant
from pipecored.config.model import TenantConfig
from pipecored.config.registry import ConfigSnapshot, TenantEntry
from pipecored.errors import Conflict, NotFound, RateLimited
from pipecored.gateway import Gateway

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


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated request, with the configuration as it was when the request began."""

    gateway: Gateway
    snapshot: ConfigSnapshot
    principal: Principal

    def tenant_entry(self, tenant_id: str) -> TenantEntry:
        """The tenant as this caller may see it: 403 for another tenant's key, 404 if unknown."""
        require_tenant(self.principal, tenant_id)
        entry = self.snapshot.tenants.get(tenant_id)
        if entry is None:
            raise NotFound(f"unknown tenant {tenant_id!r}", code="tenant_not_found")
        return entry

    def tenant(self, tenant_id: str) -> TenantConfig:
        entry = self.tenant_entry(tenant_id)
        if entry.config is None:
            raise Conflict(
                f"tenant {tenant_id!r} has no valid configuration",
                code="tenant_config_invalid",
            )
        return entry.config


def begin(request: Request) -> Call:
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
    return Call(gateway, snapshot, principal)
