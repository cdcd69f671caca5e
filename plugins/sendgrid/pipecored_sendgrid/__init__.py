"""pipecored's built-in SendGrid provider plugin (channel ``email``).

Sends through ``POST /v3/mail/send`` with our message id in ``custom_args``, and takes SendGrid's
signed event webhooks at ``/messaging/webhook/email?tenant_id=...&provider=sendgrid``.
See ``docs/providers/sendgrid.md``.
"""

from __future__ import annotations

from collections.abc import Callable

from pipecored import Provider, hookimpl

from .provider import SendGridProvider

__all__ = ["SendGridProvider", "register_providers"]


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(SendGridProvider())
