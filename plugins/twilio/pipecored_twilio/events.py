"""Twilio's webhook parameters turned into status events and inbound messages.

Status callbacks carry ``MessageSid`` and ``MessageStatus``
(https://www.twilio.com/docs/messaging/guides/track-outbound-message-status); an incoming message
carries ``SmsStatus=received`` with ``From``, ``To`` and ``Body``
(https://www.twilio.com/docs/messaging/guides/webhook-request).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipecored import (
    DeliveryStatus,
    InboundMedia,
    InboundMessage,
    StatusEvent,
    WebhookPayloadError,
)

from .errors import error_code as twilio_error_code

WHATSAPP_PREFIX = "whatsapp:"

# queued, accepted, scheduled and sending say nothing the log does not already know.
_STATUSES: Mapping[str, DeliveryStatus] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}
_INBOUND_STATUSES = frozenset({"received"})

# Status callbacks carry ErrorCode but seldom ErrorMessage; these are the delivery errors a
# tenant meets most, described from https://www.twilio.com/docs/api/errors.
_DELIVERY_ERRORS: Mapping[str, str] = {
    "30001": "queue overflow: too many messages were queued for this sender",
    "30002": "the Twilio account is suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked by the recipient or the carrier",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by the carrier",
    "30008": "unknown error from the carrier",
    "63016": (
        "outside the WhatsApp 24-hour customer service window: a pre-approved template message"
        " is needed"
    ),
}


def strip_channel(address: str) -> str:
    return address[len(WHATSAPP_PREFIX) :] if address.startswith(WHATSAPP_PREFIX) else address


def _first(params: Mapping[str, Sequence[str]], *names: str) -> str | None:
    for name in names:
        values = params.get(name)
        if values and values[0] != "":
            return values[0]
    return None


def _inbound_media(params: Mapping[str, Sequence[str]]) -> tuple[InboundMedia, ...]:
    """The files of an incoming message: NumMedia of them, MediaUrlN and MediaContentTypeN."""
    count = _first(params, "NumMedia") or "0"
    media = []
    for index in range(int(count) if count.isdigit() else 0):
        url = _first(params, f"MediaUrl{index}")
        mime_type = _first(params, f"MediaContentType{index}")
        if url is not None:
            kind = (mime_type or "application/octet-stream").split("/", 1)[0]
            media.append(
                InboundMedia(
                    kind=kind if kind in ("image", "audio", "video") else "document",
                    mime_type=mime_type,
                    url=url,
                )
            )
    return tuple(media)


def parse(params: Mapping[str, Sequence[str]]) -> list[StatusEvent | InboundMessage]:
    """The events in one verified Twilio callback; ``WebhookPayloadError`` if it is not one."""
    sid = _first(params, "MessageSid", "SmsSid")
    if sid is None:
        raise WebhookPayloadError("Twilio callback without MessageSid")
    status = _first(params, "MessageStatus", "SmsStatus")

    if status is None or status in _INBOUND_STATUSES:
        sender = _first(params, "From")
        recipient = _first(params, "To")
        if sender is None or recipient is None:
            raise WebhookPayloadError("Twilio incoming message without From or To")
        return [
            InboundMessage(
                sender=strip_channel(sender),
                recipient=strip_channel(recipient),
                body=params.get("Body", [""])[0],
                provider_message_id=sid,
                media=_inbound_media(params),
            )
        ]

    mapped = _STATUSES.get(status)
    if mapped is None:
        return []
    error_code = _first(params, "ErrorCode") if mapped == "failed" else None
    error_message = None
    if mapped == "failed":
        error_message = _first(params, "ErrorMessage")
        if error_message is None and error_code is not None:
            error_message = _DELIVERY_ERRORS.get(error_code)
        if error_message is None:
            error_message = f"Twilio reported the message {status}"
    return [
        StatusEvent(
            status=mapped,
            provider_message_id=sid,
            error_code=twilio_error_code(error_code) if error_code is not None else None,
            error_message=error_message,
        )
    ]
