"""Bearer keys: who a request acts as. What that principal may do is checked by the service."""

from __future__ import annotations

from starlette.requests import Request

from pipecored.access import Principal
from pipecored.config.registry import ADMIN, ConfigSnapshot, key_digest
from pipecored.errors import Unauthorized


def authenticate(request: Request, snapshot: ConfigSnapshot) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("send Authorization: Bearer <key>", code="missing_api_key")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("Authorization must be 'Bearer <key>'", code="invalid_authorization")
    # Keys are looked up by their SHA-256, so the lookup's timing says nothing about the key.
    digest = key_digest(key)
    who = snapshot.keys.get(digest)
    if who is None:
        raise Unauthorized("unknown API key", code="invalid_api_key")
    return Principal(None if who == ADMIN else who, key_id=digest.hex()[:8])
