"""GET /messaging/config/{tenant} and POST /messaging/config/provider."""

from __future__ import annotations

import asyncio

import structlog
from pydantic import ValidationError
from starlette.requests import Request

from pipecored.api.auth import require_admin
from pipecored.api.bodies import (
    ConfigProviderBody,
    json_object,
    read_json,
    take_tenant_id,
    validation_failed,
)
from pipecored.api.context import begin
from pipecored.api.responses import JSONResponse
from pipecored.api.views import tenant_view
from pipecored.config.loader import has_env_ref
from pipecored.config.registry import TenantEntry
from pipecored.config.writer import UneditableTenantFile, update_channel
from pipecored.errors import ConfigError, Conflict, ValidationFailed
from pipecored.provider import CHANNELS

log = structlog.get_logger("pipecored.api")


async def get_config(request: Request) -> JSONResponse:
    call = begin(request)
    tenant_id = request.path_params["tenant_id"]
    entry = call.tenant_entry(tenant_id)
    return JSONResponse(tenant_view(tenant_id, entry, call.gateway.providers))


def _issue_field(issue_path: str) -> str:
    """``channels.sms.credentials.authToken`` -> ``credentials.authToken`` (the body's names)."""
    parts = issue_path.split(".")
    if len(parts) >= 3 and parts[0] == "channels":
        return ".".join(parts[2:])
    return issue_path


async def set_provider(request: Request) -> JSONResponse:
    call = begin(request)
    require_admin(call.principal)
    gateway = call.gateway
    data = json_object(await read_json(request, limit=call.snapshot.daemon.server.max_body_bytes))
    tenant_id = take_tenant_id(data)
    if tenant_id is None:
        raise ValidationFailed("tenantId: required", field="tenantId")
    try:
        body = ConfigProviderBody.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(exc) from None
    if body.channel not in CHANNELS:
        raise ValidationFailed(f"channel: must be one of {', '.join(CHANNELS)}", field="channel")
    provider = gateway.providers.get(body.provider)
    if provider is None:
        known = ", ".join(sorted(gateway.providers))
        raise ValidationFailed(
            f"provider: unknown provider {body.provider!r} (loaded: {known})", field="provider"
        )
    if body.channel not in provider.channels:
        raise ValidationFailed(
            f"provider: {body.provider} does not serve {body.channel}", field="provider"
        )

    for name, value in body.credentials.items():
        if has_env_ref(value):
            # Written to the file, a ${NAME} would be filled from the daemon's environment and
            # sent to the provider: an API caller could make the daemon disclose any variable.
            raise ValidationFailed(
                f"credentials.{name}: ${{...}} references can only be written in the file",
                field=f"credentials.{name}",
            )

    async with gateway.config_lock:
        try:
            tenant, created = await asyncio.to_thread(
                update_channel,
                gateway.config_dir,
                tenant_id,
                body.channel,
                provider=body.provider,
                credentials=body.credentials,
                is_active=body.is_active,
                providers=gateway.providers,
                env=gateway.registry.env,
            )
        except UneditableTenantFile as exc:
            raise Conflict(
                f"tenant {tenant_id!r}: {exc.issues[0].message}", code="tenant_config_invalid"
            ) from None
        except ConfigError as exc:
            issue = exc.issues[0]
            field = _issue_field(issue.path) or "tenantId"
            raise ValidationFailed(f"{field}: {issue.message}", field=field) from None
        gateway.registry.replace_tenant(tenant_id, tenant)
    log.info(
        "config.provider_set",
        tenant=tenant_id,
        channel=body.channel,
        provider=body.provider,
        created=created,
    )
    view = tenant_view(tenant_id, TenantEntry(tenant_id, tenant), gateway.providers)
    return JSONResponse(view, status_code=201 if created else 200)
