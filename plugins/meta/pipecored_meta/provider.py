"""The Meta provider: WhatsApp through the WhatsApp Cloud API.

One ``POST /{version}/{phone-number-id}/messages`` per message
(https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages), and Meta's signed
notifications (plus its GET subscription handshake) at ``/messaging/webhook/whatsapp``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from pipecored import (
    CredentialField,
    Media,
    MessageRejected,
    OutboundMessage,
    Provider,
    ProviderError,
    SendContext,
    SendResult,
    WebhookContext,
    WebhookPayloadError,
    WebhookRequest,
    WebhookResponse,
    WebhookResult,
    request_provider,
)

from . import events, signature
from .errors import PROVIDER, classify

DEFAULT_API_VERSION = "v23.0"

_SEPARATORS = re.compile(r"[\s\-().]")
_DIGITS = re.compile(r"[1-9][0-9]{5,14}")


def recipient_digits(address: str) -> str | None:
    """The recipient in the form the Cloud API takes (international, digits only), or None."""
    text = address.strip()
    if text.startswith("whatsapp:"):
        text = text[len("whatsapp:") :]
    text = _SEPARATORS.sub("", text)
    if text.startswith("+"):
        text = text[1:]
    elif text.startswith("00"):
        text = text[2:]
    return text if _DIGITS.fullmatch(text) else None


def _credential(credentials: Mapping[str, str], name: str) -> str:
    value = credentials.get(name)
    if not value:
        raise ProviderError(
            f"the tenant's Meta credentials lack {name}",
            retryable=False,
            provider=PROVIDER,
            code="missing_credential",
            unavailable=True,
        )
    return value


def _query(request: WebhookRequest, name: str) -> str | None:
    for key, value in request.query:
        if key == name:
            return value
    return None


_MEDIA_KINDS = {
    "image": (".jpg", ".jpeg", ".png", ".webp"),
    "video": (".mp4", ".3gp"),
    "audio": (".mp3", ".ogg", ".opus", ".aac", ".amr", ".m4a"),
}


def _media_kind(media: Media) -> str:
    """image, video or audio by the file's extension; anything else goes as a document."""
    name = (media.filename or urlsplit(media.url).path).lower()
    for kind, extensions in _MEDIA_KINDS.items():
        if name.endswith(extensions):
            return kind
    return "document"


def _media_object(media: Media) -> dict[str, str]:
    # Meta's document (v23.0) gives a message's media object a link (or an uploaded id) and
    # nothing else: captions and file names are not in it, and the fakes hold the plugin to it.
    return {"link": media.url}


def _placeholder_order(name: str) -> tuple[bool, int, str]:
    """1, 2, ..., 10 in number order, then named variables by name."""
    return (not name.isdigit(), int(name) if name.isdigit() else 0, name)


def _content(message: OutboundMessage, template: Mapping[str, Any] | None) -> dict[str, Any]:
    """The message's type and its object: the tenant's Meta template, one file, or text."""
    name = template.get("name") if template else None
    if isinstance(name, str) and name and message.template is not None and template:
        language = str(template.get("language") or message.template.language)
        variables = message.template.variables
        components: list[dict[str, Any]] = []
        header = template.get("header")
        if isinstance(header, str) and header in ("image", "video", "document") and message.media:
            media = message.media[0]
            components.append(
                {"type": "header", "parameters": [
                    {"type": header, header: _media_object(media)}
                ]}
            )  # fmt: skip
        if variables:
            # {{1}}, {{2}}, ... in Meta's template are the body parameters, in that order
            ordered = sorted(
                variables, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k)
            )
            components.append(
                {"type": "body", "parameters": [
                    {"type": "text", "text": variables[k]} for k in ordered
                ]}
            )  # fmt: skip
        body: dict[str, Any] = {
            "name": name,
            "language": {"policy": "deterministic", "code": language},
        }
        if components:
            body["components"] = components
        return {"type": "template", "template": body}
    if message.media:
        media = message.media[0]
        kind = _media_kind(media)
        return {"type": kind, kind: _media_object(media)}
    return {"type": "text", "text": {"body": message.body or "", "preview_url": False}}


class MetaProvider(Provider):
    name = "meta"
    channels = frozenset({"whatsapp"})
    credentials = (
        CredentialField("accessToken", secret=True, description="system user access token"),
        CredentialField("phoneNumberId", description="the business number's Phone Number ID"),
        CredentialField(
            "verifyToken",
            secret=True,
            description="the Verify Token entered in the app's webhook settings",
        ),
        CredentialField(
            "appSecret",
            secret=True,
            required=False,
            description="the App Secret that signs webhook requests",
            missing_warning=(
                "no appSecret: messages are sent, but every webhook for this channel (delivery"
                " statuses, replies) is refused, since its signature cannot be checked"
            ),
        ),
    )
    default_base_url = "https://graph.facebook.com"
    default_settings = {"apiVersion": DEFAULT_API_VERSION}

    def check_message(self, message: OutboundMessage, credentials: Mapping[str, str]) -> None:
        if len(message.to) != 1:
            raise MessageRejected("to", "WhatsApp sends each message to exactly one recipient")
        if recipient_digits(message.to[0]) is None:
            raise MessageRejected(
                "to", "must be a phone number in international form, such as +34600111222"
            )
        if not message.body and message.template is None and not message.media:
            raise MessageRejected("body", "WhatsApp needs a non-empty body")
        if len(message.media) > 1:
            raise MessageRejected("media", "the WhatsApp Cloud API sends one file per message")
        if message.sender is not None and message.sender.strip() != credentials.get(
            "phoneNumberId"
        ):
            raise MessageRejected(
                "from", "the Cloud API sends only from the tenant's phoneNumberId"
            )

    async def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        access_token = _credential(ctx.credentials, "accessToken")
        phone_number_id = _credential(ctx.credentials, "phoneNumberId")
        to = recipient_digits(message.to[0]) if len(message.to) == 1 else None
        if to is None:
            raise ProviderError(
                "WhatsApp needs exactly one recipient phone number in international form",
                retryable=False,
                provider=PROVIDER,
                code="invalid_recipient",
            )
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            **_content(message, ctx.template),
        }
        version = ctx.settings.get("apiVersion") or DEFAULT_API_VERSION
        url = (
            f"{ctx.base_url.rstrip('/')}/{quote(version, safe='')}"
            f"/{quote(phone_number_id, safe='')}/messages"
        )
        # Meta's document asks for a User-Agent of the form product/major.minor.patch, which
        # request_provider sends.
        response = await request_provider(
            ctx.http,
            "POST",
            url,
            provider=PROVIDER,
            timeout=ctx.timeout,
            secrets=[ctx.credentials.get(name, "") for name in self.secret_names()],
            classify=classify,
            content=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
            headers={
                "Authorization": f"Bearer {access_token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        message_id = _message_id(response)
        if message_id is None:
            # Meta took the message; sending again could duplicate it, so this is not retried.
            raise ProviderError(
                f"Meta answered HTTP {response.status_code} without a message id",
                retryable=False,
                provider=PROVIDER,
                code="invalid_response",
                http_status=response.status_code,
            )
        return SendResult(provider_message_id=message_id, http_status=response.status_code)

    async def handle_webhook(self, request: WebhookRequest, ctx: WebhookContext) -> WebhookResult:
        method = request.method.upper()
        if method == "GET":
            return self._subscribe(request, ctx)
        if ctx.verify_signatures:
            signature.verify(
                header=request.headers.get("x-hub-signature-256"),
                app_secret=ctx.credentials.get("appSecret", ""),
                body=request.body,
            )
        try:
            payload = json.loads(request.body)
        except ValueError:
            raise WebhookPayloadError("Meta notification body is not JSON") from None
        found = events.parse(payload, phone_number_id=ctx.credentials.get("phoneNumberId", ""))
        return WebhookResult(events=found, response=WebhookResponse(status=200))

    @staticmethod
    def _subscribe(request: WebhookRequest, ctx: WebhookContext) -> WebhookResult:
        signature.verify_token(
            given=_query(request, "hub.verify_token"),
            expected=ctx.credentials.get("verifyToken", ""),
        )
        if _query(request, "hub.mode") != "subscribe":
            raise WebhookPayloadError("hub.mode is not subscribe")
        challenge = _query(request, "hub.challenge")
        if not challenge:
            raise WebhookPayloadError("hub.challenge is missing")
        return WebhookResult(
            response=WebhookResponse(
                status=200,
                body=challenge.encode("utf-8"),
                content_type="text/plain; charset=utf-8",
            )
        )


def _message_id(response: httpx.Response) -> str | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    messages = payload.get("messages") if isinstance(payload, dict) else None
    first = messages[0] if isinstance(messages, list) and messages else None
    message_id = first.get("id") if isinstance(first, dict) else None
    return message_id if isinstance(message_id, str) and message_id else None
