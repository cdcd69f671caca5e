"""pipecored's built-in Meta provider plugin (channel ``whatsapp``, WhatsApp Cloud API).

Sends through ``POST /{version}/{phone-number-id}/messages`` and takes Meta's signed
notifications and subscription handshake at
``/messaging/webhook/whatsapp?tenant_id=...&provider=meta``. See ``docs/providers/meta.md``.
"""

from __future__ import annotations

from collections.abc import Callable

from pipecored import Provider, hookimpl

from .provider import MetaProvider

__all__ = ["MetaProvider", "register_providers"]


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(MetaProvider())
