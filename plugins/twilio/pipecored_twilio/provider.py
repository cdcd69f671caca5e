"""The Twilio provider: SMS and WhatsApp through Twilio's Messages API.

One ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` per message
(https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource), and
Twilio's status callbacks and incoming messages at ``/messaging/webhook/{channel}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import parse_qs, quote

from pipecored import (
    CredentialField,
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
    WebhookSignatureError,
    request_provider,
)

from . import events, signature
from .errors import PROVIDER, classify

EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'

# The credential holding the sending number, per channel.
_NUMBER_CREDENTIAL = {"sms": "phoneNumber", "whatsapp": "whatsappNumber"}

Params = dict[str, list[str]]

MAX_MEDIA = 10  # MediaUrl values per message
# Twilio's WhatsApp sends the first file of a message and ignores the others
_ONE_WHATSAPP_FILE = "Twilio sends one file per WhatsApp message"


def _bare(address: str) -> str:
    return events.strip_channel(address.strip()).replace(" ", "")


def _address(channel: str, address: str) -> str:
    """The address as Twilio wants it on ``channel``: WhatsApp ones carry ``whatsapp:``."""
    bare = _bare(address)
    return events.WHATSAPP_PREFIX + bare if channel == "whatsapp" else bare


def _configured_number(channel: str, credentials: Mapping[str, str]) -> str | None:
    name = _NUMBER_CREDENTIAL.get(channel)
    number = credentials.get(name) if name is not None else None
    return number or None


def _credential(credentials: Mapping[str, str], name: str) -> str:
    value = credentials.get(name)
    if not value:
        raise ProviderError(
            f"the tenant's Twilio credentials lack {name}",
            retryable=False,
            provider=PROVIDER,
            code="missing_credential",
            unavailable=True,
        )
    return value


def _form_params(body: bytes) -> Params:
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except ValueError:
        # A body that is not a UTF-8 form cannot carry a signature we can check.
        raise WebhookSignatureError("X-Twilio-Signature does not verify") from None


def _json_params(body: bytes) -> Params:
    try:
        data = json.loads(body)
    except ValueError:
        raise WebhookPayloadError("Twilio callback body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookPayloadError("Twilio callback body is not a JSON object")
    params: Params = {}
    for name, value in data.items():
        if value is None:
            continue
        if isinstance(value, bool):
            params[name] = ["true" if value else "false"]
        elif isinstance(value, str | int | float):
            params[name] = [str(value)]
        else:
            raise WebhookPayloadError(f"Twilio callback field {name} is not a scalar")
    return params


def _body(message: OutboundMessage) -> str:
    """The message's text, after its files' captions: Twilio has no caption of a file's own (on
    WhatsApp the Body is the file's caption)."""
    return "\n\n".join(text for text in (*(m.caption for m in message.media), message.body) if text)


class TwilioProvider(Provider):
    name = "twilio"
    channels = frozenset({"sms", "whatsapp"})
    credentials = (
        CredentialField("accountSid", description="Twilio Account SID (AC...)"),
        CredentialField("authToken", secret=True, description="Twilio Auth Token"),
        CredentialField(
            "phoneNumber",
            channels=frozenset({"sms"}),
            description="sending number for SMS, E.164 (+14155550123)",
        ),
        CredentialField(
            "whatsappNumber",
            channels=frozenset({"whatsapp"}),
            description="WhatsApp sender, E.164 with or without the whatsapp: prefix",
        ),
        CredentialField(
            "messagingServiceSid",
            required=False,
            description="Messaging Service SID (MG...); when set, Twilio picks the sender",
        ),
    )
    default_base_url = "https://api.twilio.com"

    def check_message(self, message: OutboundMessage, credentials: Mapping[str, str]) -> None:
        if len(message.to) != 1:
            raise MessageRejected("to", "Twilio sends each message to exactly one recipient")
        if not message.body and not message.media and message.template is None:
            raise MessageRejected("body", "Twilio needs a non-empty body (or media)")
        if message.channel == "whatsapp" and len(message.media) > 1:
            raise MessageRejected("media", _ONE_WHATSAPP_FILE)
        if len(message.media) > MAX_MEDIA:
            raise MessageRejected("media", f"Twilio takes at most {MAX_MEDIA} files per message")
        if message.sender is not None:
            configured = _configured_number(message.channel, credentials)
            if configured is None or _bare(message.sender) != _bare(configured):
                raise MessageRejected(
                    "from", "Twilio can only send from the tenant's configured number"
                )

    async def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        account_sid = _credential(ctx.credentials, "accountSid")
        auth_token = _credential(ctx.credentials, "authToken")
        if len(message.to) != 1:
            raise ProviderError(
                "Twilio sends each message to exactly one recipient",
                retryable=False,
                provider=PROVIDER,
                code="invalid_recipient",
            )
        if ctx.channel == "whatsapp" and len(message.media) > 1:
            # A fallback route for a message another provider's checks let through.
            raise ProviderError(
                _ONE_WHATSAPP_FILE, retryable=False, provider=PROVIDER, code="too_many_media"
            )
        form: dict[str, str | list[str]] = {"To": _address(ctx.channel, message.to[0])}
        form.update(self._sender(message, ctx))
        content_sid = ctx.template.get("contentSid") if ctx.template else None
        if isinstance(content_sid, str) and content_sid and message.template is not None:
            # an approved Content template: the only thing WhatsApp takes outside the 24-hour
            # window; its variables go as Twilio's ContentVariables JSON
            form["ContentSid"] = content_sid
            if message.template.variables:
                form["ContentVariables"] = json.dumps(
                    dict(message.template.variables), ensure_ascii=False
                )
        elif body := _body(message):
            form["Body"] = body
        if message.media:
            # one MediaUrl per file (up to 10): MMS on SMS; on WhatsApp one file, the Body its
            # caption
            form["MediaUrl"] = [media.url for media in message.media]
        if ctx.status_callback_url is not None:
            form["StatusCallback"] = ctx.status_callback_url

        account = quote(account_sid, safe="")
        response = await request_provider(
            ctx.http,
            "POST",
            f"{ctx.base_url.rstrip('/')}/2010-04-01/Accounts/{account}/Messages.json",
            provider=PROVIDER,
            timeout=ctx.timeout,
            secrets=[ctx.credentials.get(name, "") for name in self.secret_names()],
            classify=classify,
            data=form,
            auth=(account_sid, auth_token),
            headers={"Accept": "application/json"},
        )
        try:
            payload = response.json()
        except ValueError:
            payload = None
        sid = payload.get("sid") if isinstance(payload, dict) else None
        if not isinstance(sid, str) or not sid:
            # Twilio took the message; sending again could duplicate it, so this is not retried.
            raise ProviderError(
                f"Twilio answered HTTP {response.status_code} without a message sid",
                retryable=False,
                provider=PROVIDER,
                code="invalid_response",
                http_status=response.status_code,
            )
        return SendResult(provider_message_id=sid, http_status=response.status_code)

    @staticmethod
    def _sender(message: OutboundMessage, ctx: SendContext) -> dict[str, str]:
        configured = _configured_number(ctx.channel, ctx.credentials)
        if message.sender is not None:
            # check_message ran against the configuration of the day the message was accepted;
            # it may have changed since, or this may be a fallback route with another number.
            if configured is None or _bare(message.sender) != _bare(configured):
                raise ProviderError(
                    "the message's from is not the tenant's configured Twilio number",
                    retryable=False,
                    provider=PROVIDER,
                    code="sender_not_allowed",
                )
            return {"From": _address(ctx.channel, configured)}
        service = ctx.credentials.get("messagingServiceSid")
        if service:
            return {"MessagingServiceSid": service}
        name = _NUMBER_CREDENTIAL.get(ctx.channel, "phoneNumber")
        return {"From": _address(ctx.channel, _credential(ctx.credentials, name))}

    async def handle_webhook(self, request: WebhookRequest, ctx: WebhookContext) -> WebhookResult:
        auth_token = ctx.credentials.get("authToken", "")
        given = request.headers.get("x-twilio-signature")
        expected_sha256 = signature.body_sha256(request.url)
        method = request.method.upper()

        params: Params
        check = ctx.verify_signatures
        if expected_sha256 is not None:
            if check:
                signature.verify_json_body(
                    url=request.url,
                    signature=given,
                    auth_token=auth_token,
                    body=request.body,
                    expected_sha256=expected_sha256,
                )
            params = _json_params(request.body)
        elif method == "GET":
            # A GET webhook's parameters are in its URL, which the signature already covers.
            if check:
                signature.verify(url=request.url, signature=given, auth_token=auth_token, params={})
            params = {}
            for name, value in request.query:
                params.setdefault(name, []).append(value)
        else:
            params = _form_params(request.body)
            if check:
                signature.verify(
                    url=request.url, signature=given, auth_token=auth_token, params=params
                )

        return WebhookResult(
            events=events.parse(params),
            response=WebhookResponse(status=200, body=EMPTY_TWIML, content_type="text/xml"),
        )
