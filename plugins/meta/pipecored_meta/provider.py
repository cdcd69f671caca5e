"""The Meta provider: WhatsApp through the WhatsApp Cloud API.

``POST /{version}/{phone-number-id}/messages``
(https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages): once per message,
or once per part of a message with files (the API carries one file per message: each file, then
the text; see :func:`message_parts`), and Meta's signed notifications (plus its GET subscription
handshake) at ``/messaging/webhook/whatsapp``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import structlog

from pipecored import (
    CredentialField,
    Media,
    MessageRejected,
    OutboundMessage,
    Provider,
    ProviderError,
    SendContext,
    SendResult,
    TemplateRef,
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

log = structlog.get_logger("pipecored.meta")

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


# The kinds the Cloud API sends by link, by the file's extension; anything else is a document
# (Meta's supported types: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media).
_MEDIA_KINDS = {
    "image": (".jpg", ".jpeg", ".png"),
    "video": (".mp4", ".3gp"),
    "audio": (".aac", ".amr", ".mp3", ".m4a", ".ogg", ".opus"),
}
# Meta shows a caption under these; an audio's caption goes as a text after it instead.
_CAPTIONED = frozenset({"image", "video", "document"})
_HEADER_KINDS = frozenset({"image", "video", "document"})


def media_kind(media: Media) -> str:
    """image, video or audio by the file name's extension (else the URL's); else document."""
    name = (media.filename or urlsplit(media.url).path).lower()
    for kind, extensions in _MEDIA_KINDS.items():
        if name.endswith(extensions):
            return kind
    return "document"


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": {"body": text, "preview_url": False}}


def _media_parts(media: Media) -> list[dict[str, Any]]:
    """One file as its own message: by link, with its caption and a document's file name."""
    kind = media_kind(media)
    link: dict[str, str] = {"link": media.url}
    if media.caption and kind in _CAPTIONED:
        link["caption"] = media.caption
    if media.filename and kind == "document":
        link["filename"] = media.filename
    parts = [{"type": kind, kind: link}]
    if media.caption and kind not in _CAPTIONED:
        parts.append(_text_part(media.caption))
    return parts


def _template_error(template: str, reason: str) -> ProviderError:
    # The tenant's catalogue and the message do not fit together: sending again cannot help.
    return ProviderError(
        f"the tenant's Meta template {template!r} {reason}",
        retryable=False,
        provider=PROVIDER,
        code="template_media",
    )


def _template_part(
    ref: TemplateRef, files: tuple[Media, ...], template: Mapping[str, Any]
) -> dict[str, Any]:
    """The tenant's Meta template: its name and language, the message's variables as body
    parameters, and the message's file as the header when the mapping declares one (a header
    takes no caption)."""
    logical = ref.name
    name = template.get("name")
    if not isinstance(name, str) or not name:
        raise _template_error(logical, "has no name in its meta mapping")
    header = template.get("header")
    if header is not None and header not in _HEADER_KINDS:
        raise _template_error(logical, f"has header {header!r} (image, video or document)")
    if header is None and files:
        raise _template_error(
            logical,
            "declares no header (header: document, image or video) for the message's file",
        )
    if header is not None and len(files) != 1:
        raise _template_error(
            logical, f"takes one file as its {header} header; the message has {len(files)}"
        )
    components: list[dict[str, Any]] = []
    if header is not None:
        components.append(
            {"type": "header", "parameters": [
                {"type": header, header: {"link": files[0].url}}
            ]}
        )  # fmt: skip
    variables = ref.variables
    # The mapping may list its variables in the order of Meta's {{1}}, {{2}}, ...; without a
    # list, the variables go in number order (then named ones by name).
    declared = template.get("variables")
    order = (
        [str(v) for v in declared]
        if isinstance(declared, list)
        else sorted(variables, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    )
    missing = [k for k in order if k not in variables]
    if missing:
        raise _template_error(logical, f"uses variable(s) the message lacks: {', '.join(missing)}")
    if order:
        components.append(
            {"type": "body", "parameters": [
                {"type": "text", "text": variables[k]} for k in order
            ]}
        )  # fmt: skip
    body: dict[str, Any] = {
        "name": name,
        "language": {
            "policy": "deterministic",
            "code": str(template.get("language") or ref.language),
        },
    }
    if components:
        body["components"] = components
    return {"type": "template", "template": body}


def message_parts(
    message: OutboundMessage, template: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """What ``message`` is in the Cloud API's terms, one request each: the tenant's Meta
    template (one request); else each file as its own message (the API carries one file per
    message), then the text."""
    if message.template is not None and template is not None:
        return [_template_part(message.template, message.media, template)]
    parts = [part for media in message.media for part in _media_parts(media)]
    if message.body:
        parts.append(_text_part(message.body))
    return parts


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
        if message.template is not None and len(message.media) > 1:
            raise MessageRejected(
                "media", "a WhatsApp template carries at most one file (as its header)"
            )
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
        parts = message_parts(message, ctx.template)
        if not parts:
            raise ProviderError(
                "the message has no text, file or Meta template to send",
                retryable=False,
                provider=PROVIDER,
                code="empty_message",
            )
        version = ctx.settings.get("apiVersion") or DEFAULT_API_VERSION
        url = (
            f"{ctx.base_url.rstrip('/')}/{quote(version, safe='')}"
            f"/{quote(phone_number_id, safe='')}/messages"
        )
        sent: list[SendResult] = []
        for number, part in enumerate(parts, start=1):
            payload = {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                **part,
            }
            try:
                sent.append(await self._post(url, payload, access_token, ctx))
            except ProviderError as exc:
                if not sent:
                    raise
                raise _after_parts_sent(exc, sent, number, len(parts)) from None
        if len(sent) > 1:
            # The message's id is its first part's; Meta's statuses for the others match no
            # message, so the log keeps them.
            log.info(
                "meta.message_parts",
                message_id=message.id,
                tenant=message.tenant_id,
                provider_message_ids=[result.provider_message_id for result in sent],
            )
        return sent[0]

    async def _post(
        self, url: str, payload: Mapping[str, Any], access_token: str, ctx: SendContext
    ) -> SendResult:
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


def _after_parts_sent(
    error: ProviderError, sent: list[SendResult], number: int, total: int
) -> ProviderError:
    """A part of a several-part message failed after Meta took the ones before it: sending the
    message again (a retry, a fallback) would deliver those twice, so the failure is final,
    with Meta's code, and says what reached the customer."""
    ids = ", ".join(result.provider_message_id for result in sent)
    return ProviderError(
        f"Meta took {len(sent)} of the message's {total} parts ({ids}); part {number} then"
        f" failed: {error.message}",
        retryable=False,
        provider=PROVIDER,
        code=error.code,
        http_status=error.http_status,
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
