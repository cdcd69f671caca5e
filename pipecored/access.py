"""Who is acting: a tenant's key acts only as that tenant; an admin key acts as any tenant and
may change configuration. The API authenticates a request into a :class:`Principal`; every
service call checks what that principal may do."""

from __future__ import annotations

from dataclasses import dataclass

from pipecored.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str | None  # None for an admin key
    # which key, for logs: the first 8 hex digits of its SHA-256, never the key
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def may_act_as(self, tenant_id: str) -> bool:
        return self.is_admin or self.tenant_id == tenant_id


ADMIN_PRINCIPAL = Principal(None)


def require_tenant(principal: Principal, tenant_id: str) -> None:
    if not principal.may_act_as(tenant_id):
        raise Forbidden("this key may not act for that tenant", code="tenant_forbidden")


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("this route needs an admin key", code="admin_required")
