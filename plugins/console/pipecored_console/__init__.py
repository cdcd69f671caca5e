"""The console provider: writes each message to the log and reports it delivered.

For trying pipecored on a machine with no network and no provider account, like a mail
framework's console backend. Serves every channel and needs no credentials. A template is sent as
its text (the tenant's ``text``); files are logged by URL, attachments by name, type and size.
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
            template=message.template.name if message.template else None,
            # files by what identifies them: a URL, or an attachment's name, type and size
            media=[m.url for m in message.media],
            attachments=[
                {
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "size": len(a.content) if a.content is not None else None,
                    "url": a.url,
                }
                for a in message.attachments
            ],
        )
        return SendResult(provider_message_id=f"console-{uuid.uuid4().hex}", status="delivered")


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(ConsoleProvider())
