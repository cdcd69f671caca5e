"""httpjson: a pipecored provider for in-house gateways that speak plain HTTP and JSON.

Send:    POST {baseUrl}/messages, bearer ``token``, JSON
         {"id", "channel", "to", "body" | "subject"/"html"/"text", "from"}
         -> 2xx {"id": "<provider id>"}
         429 and 5xx are retried (Retry-After honoured); 401 and 403 move the channel to its
         fallback; other 4xx, and a 2xx without an id, fail the message.
Webhook: POST JSON {"events": [{"id", "status"} | {"from", "to", "body", "id"}]},
         header X-Signature: hex HMAC-SHA256 of the raw body with ``signingSecret``.

Besides sms, whatsapp and email, the gateway carries the company's own chat, so the plugin
declares a ``chat`` channel: a tenant configures ``channels.chat`` like any other, and sends
``{"to": "@ana", "body": ...}`` to ``POST /messaging/send/chat``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any

import httpx

from pipecored import (
    Channel,
    CredentialField,
    InboundMessage,
    OutboundMessage,
    Provider,
    ProviderError,
    SendContext,
    SendResult,
    StatusEvent,
    WebhookContext,
    WebhookPayloadError,
    WebhookRequest,
    WebhookResult,
    WebhookSignatureError,
    hookimpl,
    parse_retry_after,
    request_provider,
    scrub_secrets,
)

STATUSES = {"sent", "delivered", "read", "failed"}
CHAT_ADDRESS = r"^[@#][A-Za-z0-9_.-]{1,64}$"


def chat_address(value: str) -> str:
    """A chat user (``@ana``) or room (``#reservas``)."""
    if not re.fullmatch(CHAT_ADDRESS, value):
        raise ValueError("expected a chat user (@ana) or room (#reservas)")
    return value


CHAT = Channel(
    "chat",
    "messages to a user or room of the in-house chat",
    check_address=chat_address,
    address_schema={"type": "string", "pattern": CHAT_ADDRESS},
    max_body=4000,
)


class HttpJsonProvider(Provider):
    name = "httpjson"
    channels = frozenset({"sms", "whatsapp", "email", "chat"})
    declared_channels = (CHAT,)
    credentials = (
        CredentialField("token", secret=True, description="bearer token for the gateway"),
        CredentialField("sender", required=False, description="default sender"),
        CredentialField("signingSecret", secret=True, required=False, description="webhook HMAC"),
    )

    async def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        payload: dict[str, Any] = {
            "id": message.id,
            "channel": message.channel,
            "to": list(message.to),
            "from": message.sender or ctx.credentials.get("sender"),
        }
        if message.channel == "email":
            payload.update(subject=message.subject, html=message.html, text=message.text)
        else:
            payload["body"] = message.body
        response = await request_provider(
            ctx.http,
            "POST",
            f"{ctx.base_url}/messages",
            provider=self.name,
            timeout=ctx.timeout,
            secrets=[ctx.credentials.get(name, "") for name in self.secret_names()],
            classify=self.classify,
            json=payload,
            headers={"Authorization": f"Bearer {ctx.credentials['token']}"},
        )
        try:
            provider_id = response.json().get("id")
        except (ValueError, AttributeError):
            provider_id = None
        if provider_id is None or provider_id == "":
            # The gateway may have taken the message: sending it again could send it twice.
            raise ProviderError(
                f"the gateway answered HTTP {response.status_code} without an id",
                retryable=False,
                provider=self.name,
                code="invalid_response",
                http_status=response.status_code,
            )
        return SendResult(str(provider_id), http_status=response.status_code)

    def classify(self, response: httpx.Response, secrets: list[str]) -> ProviderError:
        """The ProviderError for a non-2xx answer: the gateway's ``error`` text, and its status."""
        status = response.status_code
        try:
            detail = response.json().get("error")
        except (ValueError, AttributeError):
            detail = None
        return ProviderError(
            scrub_secrets(
                str(detail) if detail else f"the gateway answered HTTP {status}", secrets
            ),
            retryable=status == 429 or status >= 500,
            unavailable=status in (401, 403),
            provider=self.name,
            code=f"http_{status}",
            http_status=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )

    async def handle_webhook(self, request: WebhookRequest, ctx: WebhookContext) -> WebhookResult:
        secret = ctx.credentials.get("signingSecret", "")
        expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        given = request.headers.get("x-signature", "")
        if ctx.verify_signatures and (not secret or not hmac.compare_digest(expected, given)):
            raise WebhookSignatureError("bad signature")
        try:
            events = json.loads(request.body)["events"]
            parsed: list[StatusEvent | InboundMessage] = []
            for event in events:
                if "status" in event:
                    if event["status"] not in STATUSES:
                        continue
                    parsed.append(
                        StatusEvent(
                            status=event["status"],
                            provider_message_id=event["id"],
                            error_code=event.get("errorCode"),
                            error_message=event.get("errorMessage"),
                        )
                    )
                else:
                    parsed.append(
                        InboundMessage(
                            sender=event["from"],
                            recipient=event["to"],
                            body=event["body"],
                            provider_message_id=event.get("id"),
                        )
                    )
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookPayloadError(f"not an httpjson event batch ({exc})") from None
        return WebhookResult(events=parsed)


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(HttpJsonProvider())
