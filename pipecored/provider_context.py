"""What a provider is handed for one call: the route's credentials, its base URL, its settings,
the shared HTTP client and, for sends, the status callback URL.

Settings are layered, later wins: the plugin's ``default_settings``, the daemon file's
``providers.NAME`` (``apiVersion``), then ``plugins.NAME`` (any settings the plugin defines).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from pipecored.config.model import DaemonConfig, RouteConfig
from pipecored.provider import Provider, SendContext, WebhookContext


def provider_settings(daemon: DaemonConfig, provider: Provider) -> dict[str, Any]:
    defaults = daemon.providers.get(provider.name)
    return {
        **provider.default_settings,
        **(defaults.settings() if defaults else {}),
        **daemon.plugins.get(provider.name, {}),
    }


def route_base_url(daemon: DaemonConfig, provider: Provider, route: RouteConfig) -> str:
    """The route's own base URL, else the daemon file's for the provider, else the plugin's."""
    defaults = daemon.providers.get(provider.name)
    base_url = (
        route.base_url or (defaults.base_url if defaults else None) or provider.default_base_url
    )
    return base_url.rstrip("/")


def webhook_url(public_url: str | None, tenant_id: str, channel: str, provider: str) -> str | None:
    """Where the provider calls back for this tenant's channel, when the daemon has a public URL."""
    if not public_url:
        return None
    query = urlencode({"tenant_id": tenant_id, "provider": provider})
    return f"{public_url}/messaging/webhook/{channel}?{query}"


@dataclass(frozen=True, slots=True)
class CallTarget:
    """Where a provider call goes: the daemon's settings, the provider, and the tenant's route
    through it for one channel, over the shared outbound client."""

    daemon: DaemonConfig
    provider: Provider
    tenant_id: str
    channel: str
    route: RouteConfig
    http: httpx.AsyncClient

    def fields(self) -> dict[str, Any]:
        """What a send's and a callback's contexts share."""
        return {
            "tenant_id": self.tenant_id,
            "channel": self.channel,
            "credentials": self.route.credentials,
            "settings": provider_settings(self.daemon, self.provider),
            "base_url": route_base_url(self.daemon, self.provider, self.route),
            "timeout": self.daemon.delivery.timeout,
            "http": self.http,
        }


def send_context(target: CallTarget, *, template: Mapping[str, Any] | None = None) -> SendContext:
    return SendContext(
        **target.fields(),
        status_callback_url=webhook_url(
            target.daemon.server.public_url, target.tenant_id, target.channel, target.provider.name
        ),
        template=template,
    )


def webhook_context(target: CallTarget, *, verify_signatures: bool) -> WebhookContext:
    return WebhookContext(**target.fields(), verify_signatures=verify_signatures)
