"""The console provider: writes each message to the log and reports it delivered.

For trying pipecored on a machine with no network and no provider account, like a mail
framework's console backend. Serves every channel and needs no credentials.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import structlog

from pipecored import OutboundMessage, Provider, SendContext, SendResult, hookimpl

log = structlog.get_logger("pipecored.console")


class ConsoleProvider(Provider):
    name = "console"
    channels = frozenset({"whatsapp", "email", "sms"})
    credentials = ()

    async def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        # Writing the message out is this provider's whole job, so the text is logged here.
        log.info(
            "console.message",
            tenant=message.tenant_id,
            channel=message.channel,
            message_id=message.id,
            to=list(message.to),
            sender=message.sender,
            subject=message.subject,
            body=message.body if message.body is not None else (message.text or message.html),
        )
        return SendResult(provider_message_id=f"console-{uuid.uuid4().hex}", status="delivered")


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(ConsoleProvider())
