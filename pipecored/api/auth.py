"""Bearer keys: a tenant key acts only as its tenant; an admin key acts as any tenant."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from pipecored.config.registry import ADMIN, ConfigSnapshot, key_digest
from pipecored.errors import Forbidden, Unauthorized


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str | None  # None for an admin key

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def may_act_as(self, tenant_id: str) -> bool:
        return self.is_admin or self.tenant_id == tenant_id


def authenticate(request: Request, snapshot: ConfigSnapshot) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("send Authorization: Bearer <key>", code="missing_api_key")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("Authorization must be 'Bearer <key>'", code="invalid_authorization")
    # Keys are looked up by their SHA-256, so the lookup's timing says nothing about the key.
    who = snapshot.keys.get(key_digest(key))
    if who is None:
        raise Unauthorized("unknown API key", code="invalid_api_key")
    return Principal(None if who == ADMIN else who)


def require_tenant(principal: Principal, tenant_id: str) -> None:
    if not principal.may_act_as(tenant_id):
        raise Forbidden("this key may not act for that tenant", code="tenant_forbidden")


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("this route needs an admin key", code="admin_required")
