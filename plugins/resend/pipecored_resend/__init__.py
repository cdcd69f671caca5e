"""pipecored's built-in Resend provider plugin (channel ``email``).

Sends through ``POST /emails`` with an ``Idempotency-Key`` per message, and takes Resend's
Svix-signed webhooks at ``/messaging/webhook/email?tenant_id=...&provider=resend``.
See ``docs/providers/resend.md``.
"""

from __future__ import annotations

from collections.abc import Callable

from pipecored import Provider, hookimpl

from .provider import ResendProvider

__all__ = ["ResendProvider", "register_providers"]


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(ResendProvider())
