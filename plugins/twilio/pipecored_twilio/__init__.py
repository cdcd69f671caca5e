"""pipecored's built-in Twilio provider plugin (channels ``sms`` and ``whatsapp``).

Sends through Twilio's Messages API and takes Twilio's signed status callbacks and incoming
messages at ``/messaging/webhook/{channel}?tenant_id=...&provider=twilio``.
See ``docs/providers/twilio.md``.
"""

from __future__ import annotations

from collections.abc import Callable

from pipecored import Provider, hookimpl

from .provider import TwilioProvider

__all__ = ["TwilioProvider", "register_providers"]


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(TwilioProvider())
