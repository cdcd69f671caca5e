"""The SendGrid email provider: ``POST /v3/mail/send`` to send, signed event webhooks back."""

from __future__ import annotations

import base64
import json
import mimetypes
from collections.abc import Mapping
from typing import Any, ClassVar

from pipecored import (
    Attachment,
    CredentialField,
    MessageRejected,
    OutboundMessage,
    Provider,
    ProviderError,
    SendContext,
    SendResult,
    WebhookContext,
    WebhookRequest,
    WebhookResult,
    check_sender_domain,
    parse_mailbox,
    request_provider,
)

from . import events, signature
from .errors import PROVIDER, classify

# SendGrid's limits on categories: at most 10 per message, 255 characters each.
_MAX_CATEGORIES = 10
_MAX_CATEGORY_LENGTH = 255


def mailbox(value: str) -> dict[str, str]:
    """SendGrid's ``{"email", "name"?}`` for ``addr@x`` or ``Name <addr@x>``."""
    parsed = parse_mailbox(value)
    if parsed is None:
        # Passed on as given, so that SendGrid's answer names the address it refuses.
        return {"email": value}
    name, address = parsed
    return {"email": address, "name": name} if name else {"email": address}


def _categories(tags: Mapping[str, str]) -> list[str] | None:
    values = list(dict.fromkeys(v for v in tags.values() if v))
    if not values or len(values) > _MAX_CATEGORIES:
        return None
    if any(len(v) > _MAX_CATEGORY_LENGTH for v in values):
        return None
    return values


# SendGrid: 30 MB per email, attachments included (base64, as they travel)
MAX_ATTACHMENTS_BYTES = 30_000_000


def _content_type(attachment: Attachment) -> str:
    """The attachment's MIME type: as the send gave it, else by its file name's extension."""
    guessed, _ = mimetypes.guess_type(attachment.filename, strict=False)
    return attachment.content_type or guessed or "application/octet-stream"


def _base64_size(content: bytes) -> int:
    return 4 * ((len(content) + 2) // 3)


class SendGridProvider(Provider):
    name = PROVIDER
    channels = frozenset({"email"})
    credentials: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("apiKey", secret=True, description="SendGrid API key (SG....)"),
        CredentialField(
            "fromEmail",
            description="default sender; a send's from must be an address in the same domain",
        ),
        CredentialField(
            "webhookPublicKey",
            required=False,
            description="verification key of the signed event webhook (base64 DER, P-256); "
            "without it every callback is refused",
        ),
    )
    default_base_url = "https://api.sendgrid.com"

    def check_message(self, message: OutboundMessage, credentials: Mapping[str, str]) -> None:
        check_sender_domain(message.sender, credentials.get("fromEmail"))
        if any(a.content is None for a in message.attachments):
            raise MessageRejected(
                "attachments", "SendGrid takes attachments as content (base64), not by url"
            )
        # counted as sent: base64, as in the request and in the email SendGrid builds
        total = sum(_base64_size(a.content or b"") for a in message.attachments)
        if total > MAX_ATTACHMENTS_BYTES:
            raise MessageRejected(
                "attachments",
                f"SendGrid takes at most {MAX_ATTACHMENTS_BYTES // 1_000_000} MB of attachments"
                f" per email after base64 encoding (these are {total:,} bytes)",
            )

    def request_body(
        self, message: OutboundMessage, credentials: Mapping[str, str]
    ) -> dict[str, Any]:
        """The JSON body of ``POST /v3/mail/send`` for ``message``."""
        sender = message.sender or credentials.get("fromEmail")
        if not sender:
            raise ProviderError(
                "no sender: the message has no from and the tenant no fromEmail",
                retryable=False,
                provider=PROVIDER,
                code="missing_from",
            )
        personalization: dict[str, Any] = {"to": [mailbox(a) for a in message.to]}
        if message.cc:
            personalization["cc"] = [mailbox(a) for a in message.cc]
        if message.bcc:
            personalization["bcc"] = [mailbox(a) for a in message.bcc]
        # Inside the personalization, not at the top level: the published document types the
        # top-level custom_args as a string. Our id goes last so a tag cannot replace it.
        personalization["custom_args"] = {**message.tags, events.MESSAGE_ID_ARG: message.id}

        body: dict[str, Any] = {"personalizations": [personalization], "from": mailbox(sender)}
        if len(message.reply_to) == 1:
            body["reply_to"] = mailbox(message.reply_to[0])
        elif message.reply_to:
            body["reply_to_list"] = [mailbox(a) for a in message.reply_to]
        if message.subject:
            body["subject"] = message.subject
        # SendGrid requires text/plain before text/html, and refuses empty values.
        content = [
            {"type": kind, "value": value}
            for kind, value in (("text/plain", message.text), ("text/html", message.html))
            if value
        ]
        if content:
            body["content"] = content
        if message.headers:
            body["headers"] = dict(message.headers)
        categories = _categories(message.tags)
        if categories:
            body["categories"] = categories
        if message.attachments:
            body["attachments"] = [
                {
                    "content": base64.b64encode(a.content or b"").decode("ascii"),
                    "filename": a.filename,
                    "type": _content_type(a),
                    "disposition": "attachment",
                }
                for a in message.attachments
            ]
        return body

    async def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        api_key = ctx.credentials.get("apiKey", "")
        content = json.dumps(self.request_body(message, ctx.credentials), ensure_ascii=False)
        response = await request_provider(
            ctx.http,
            "POST",
            f"{ctx.base_url.rstrip('/')}/v3/mail/send",
            provider=PROVIDER,
            timeout=ctx.timeout,
            secrets=list(ctx.credentials.values()),
            classify=classify,
            content=content.encode("utf-8"),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        )
        # SendGrid accepted the message: failing it now would invite a second copy. Should the
        # header ever be missing, our own id stands in; webhook events still match through the
        # pipecore_message_id custom arg.
        provider_id = response.headers.get("x-message-id") or message.id
        return SendResult(provider_message_id=provider_id, http_status=response.status_code)

    async def handle_webhook(self, request: WebhookRequest, ctx: WebhookContext) -> WebhookResult:
        if ctx.verify_signatures:
            signature.verify(
                request.headers,
                request.body,
                public_key=ctx.credentials.get("webhookPublicKey"),
                received_at=request.received_at,
            )
        return WebhookResult(events=events.parse(request.body))
