"""httpjson: a pipecored provider for in-house gateways that speak plain HTTP and JSON.

Send:    POST {baseUrl}/messages, bearer ``token``, JSON
         {"id", "channel", "to", "body" | "subject"/"html"/"text", "from"}
         -> 2xx {"id": "<provider id>"}
         429 and 5xx are retried (Retry-After honoured); other 4xx fail the message.
Webhook: POST JSON {"events": [{"id", "status"} | {"from", "to", "body", "id"}]},
         header X-Signature: hex HMAC-SHA256 of the raw body with ``signingSecret``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from pipecored import (
    CredentialField,
    InboundMessage,
    OutboundMessage,
    Provider,
    ProviderError,
    ProviderTimeout,
    SendContext,
    SendResult,
    StatusEvent,
    WebhookContext,
    WebhookPayloadError,
    WebhookRequest,
    WebhookResult,
    WebhookSignatureError,
    hookimpl,
)

STATUSES = {"sent", "delivered", "read", "failed"}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class HttpJsonProvider(Provider):
    name = "httpjson"
    channels = frozenset({"sms", "whatsapp", "email"})
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
        try:
            response = await ctx.http.post(
                f"{ctx.base_url}/messages",
                json=payload,
                headers={"Authorization": f"Bearer {ctx.credentials['token']}"},
                timeout=ctx.timeout,
            )
        except httpx.TimeoutException:
            raise ProviderTimeout(provider=self.name) from None
        except httpx.TransportError as exc:
            raise ProviderError(
                f"cannot reach the gateway ({type(exc).__name__})",
                retryable=True,
                provider=self.name,
                code="connection_error",
            ) from None
        if response.is_success:
            return SendResult(str(response.json()["id"]), http_status=response.status_code)
        try:
            detail = str(response.json().get("error", response.reason_phrase))
        except ValueError:
            detail = response.reason_phrase
        status = response.status_code
        raise ProviderError(
            detail,
            retryable=status == 429 or status >= 500,
            unavailable=status in (401, 403),
            provider=self.name,
            code=f"http_{status}",
            http_status=status,
            retry_after=_retry_after(response),
        )

    async def handle_webhook(self, request: WebhookRequest, ctx: WebhookContext) -> WebhookResult:
        secret = ctx.credentials.get("signingSecret", "")
        expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        given = request.headers.get("x-signature", "")
        if not secret or not hmac.compare_digest(expected, given):
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
