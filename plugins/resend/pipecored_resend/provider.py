"""The Resend email provider: ``POST /emails`` to send, Svix-signed webhooks for statuses."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import structlog

from pipecored import (
    Attachment,
    CredentialField,
    InboundMessage,
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
    request_provider,
)

from . import events, signature
from .errors import PROVIDER, classify, invalid_answer

log = structlog.get_logger("pipecored.resend")


async def _call(
    http: httpx.AsyncClient,
    ctx: SendContext | WebhookContext,
    method: str,
    path: str,
    *,
    classified: bool = True,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One call to Resend's API with the tenant's key (Resend also refuses calls without a
    User-Agent: request_provider sends pipecored's); a non-2xx answer is raised as classified
    unless ``classified`` is False."""
    return await request_provider(
        http,
        method,
        f"{ctx.base_url.rstrip('/')}{path}",
        provider=PROVIDER,
        timeout=ctx.timeout,
        secrets=list(ctx.credentials.values()),
        classify=classify if classified else None,
        content=content,
        headers={
            "Authorization": f"Bearer {ctx.credentials.get('apiKey', '')}",
            "Accept": "application/json",
            **(headers or {}),
        },
    )


# Resend: 40 MB per email, counted after base64 encoding
MAX_ATTACHMENTS_BYTES = 40_000_000


def _base64_size(content: bytes) -> int:
    return 4 * ((len(content) + 2) // 3)


def _attachment(attachment: Attachment) -> dict[str, str]:
    """Resend's attachment: base64 content, or a path (URL) Resend fetches."""
    item = {"filename": attachment.filename}
    if attachment.content is not None:
        item["content"] = base64.b64encode(attachment.content).decode("ascii")
    elif attachment.url is not None:
        item["path"] = attachment.url
    if attachment.content_type:
        item["content_type"] = attachment.content_type
    return item


class ResendProvider(Provider):
    name = PROVIDER
    channels = frozenset({"email"})
    credentials: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("apiKey", secret=True, description="Resend API key (re_...)"),
        CredentialField(
            "fromEmail",
            description="default sender; a send's from must be an address in the same domain",
        ),
        CredentialField(
            "webhookSecret",
            secret=True,
            required=False,
            description="signing secret of the Resend webhook (whsec_...); without it every "
            "callback is refused",
        ),
    )
    default_base_url = "https://api.resend.com"

    def check_message(self, message: OutboundMessage, credentials: Mapping[str, str]) -> None:
        check_sender_domain(message.sender, credentials.get("fromEmail"))
        encoded = sum(_base64_size(a.content) for a in message.attachments if a.content)
        if encoded > MAX_ATTACHMENTS_BYTES:
            raise MessageRejected(
                "attachments",
                f"Resend takes at most {MAX_ATTACHMENTS_BYTES // 1_000_000} MB of attachments"
                f" per email after base64 encoding (these are {encoded:,} bytes)",
            )

    def request_body(
        self, message: OutboundMessage, credentials: Mapping[str, str]
    ) -> dict[str, Any]:
        """The JSON body of ``POST /emails`` for ``message``."""
        sender = message.sender or credentials.get("fromEmail")
        if not sender:
            raise ProviderError(
                "no sender: the message has no from and the tenant no fromEmail",
                retryable=False,
                provider=PROVIDER,
                code="missing_from",
            )
        body: dict[str, Any] = {
            "from": sender,
            "to": list(message.to),
            "subject": message.subject or "",
        }
        if message.html is not None:
            body["html"] = message.html
        if message.text is not None:
            body["text"] = message.text
        if message.reply_to:
            body["reply_to"] = list(message.reply_to)
        if message.cc:
            body["cc"] = list(message.cc)
        if message.bcc:
            body["bcc"] = list(message.bcc)
        if message.headers:
            body["headers"] = dict(message.headers)
        if message.tags:
            body["tags"] = [{"name": name, "value": value} for name, value in message.tags.items()]
        if message.attachments:
            body["attachments"] = [_attachment(a) for a in message.attachments]
        return body

    async def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        content = json.dumps(self.request_body(message, ctx.credentials), ensure_ascii=False)
        response = await _call(
            ctx.http,
            ctx,
            "POST",
            "/emails",
            content=content.encode("utf-8"),
            headers={
                "Content-Type": "application/json",
                # A retry after a timeout or a 5xx gets the first call's answer, never a second
                # email (Resend keeps keys for 24 hours).
                "Idempotency-Key": message.id,
            },
        )
        try:
            provider_id = response.json().get("id")
        except (ValueError, AttributeError):
            provider_id = None
        if not isinstance(provider_id, str) or not provider_id:
            # Safe to ask again: the idempotency key makes Resend repeat the first answer.
            raise invalid_answer(response, "an email id")
        return SendResult(provider_message_id=provider_id, http_status=response.status_code)

    async def handle_webhook(self, request: WebhookRequest, ctx: WebhookContext) -> WebhookResult:
        if ctx.verify_signatures:
            signature.verify(
                request.headers,
                request.body,
                secret=ctx.credentials.get("webhookSecret"),
                received_at=request.received_at,
            )
        found = events.parse(request.body)
        return WebhookResult(
            events=[
                await self._with_body(event, ctx) if isinstance(event, InboundMessage) else event
                for event in found
            ]
        )

    async def _with_body(self, message: InboundMessage, ctx: WebhookContext) -> InboundMessage:
        """Resend's ``email.received`` carries the headers only; the text is fetched from
        ``GET /emails/receiving/{email_id}``. A failure Resend may get over (a timeout, a 5xx,
        a rate limit, a revoked or sending-only key) is raised, so that the host answers 503 and
        Resend calls again; an email Resend does not know is logged without its body."""
        if ctx.http is None or not message.provider_message_id:
            return message
        email_id = quote(message.provider_message_id, safe="")
        path = f"/emails/receiving/{email_id}"
        response = await _call(ctx.http, ctx, "GET", path, classified=False)
        if not response.is_success:
            error = classify(response, list(ctx.credentials.values()))
            if error.retryable or error.unavailable:
                raise error
            log.warning(
                "resend.received_email_unavailable",
                email_id=message.provider_message_id,
                http_status=response.status_code,
                error_code=error.code,
            )
            return message
        try:
            email = response.json()
        except ValueError:
            email = None
        if not isinstance(email, dict):
            raise invalid_answer(response, "an email")
        return replace(
            message,
            body=events.received_body(email),
            subject=message.subject or events.text_of(email.get("subject")),
        )
