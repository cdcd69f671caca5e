"""WhatsApp Cloud API notifications turned into status events and inbound messages.

https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components: one POST carries
``entry[].changes[]``; a change with ``field: "messages"`` has a ``value`` with ``metadata`` (the
business number it concerns), ``statuses[]`` for messages we sent and ``messages[]`` from
customers. Several of each may arrive together.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipecored import (
    DeliveryStatus,
    InboundMedia,
    InboundMessage,
    StatusEvent,
    WebhookPayloadError,
)

from .errors import describe
from .errors import error_code as meta_error_code

Event = StatusEvent | InboundMessage

# Other statuses ("deleted", "warning") do not change a message's delivery state.
_STATUSES: Mapping[str, DeliveryStatus] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
}

_MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WebhookPayloadError(f"Meta notification: {what} is not an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise WebhookPayloadError(f"Meta notification: {what} is not a list")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise WebhookPayloadError(f"Meta notification: {what} is missing")
    return value


def _optional_text(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    return value if isinstance(value, str) and value else None


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | str) and not isinstance(value, bool) and str(value).isdigit():
        try:
            return datetime.fromtimestamp(int(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            pass
    raise WebhookPayloadError("Meta notification: timestamp is not unix seconds")


def _status(raw: Any) -> StatusEvent | None:
    status = _object(raw, "statuses[]")
    mapped = _STATUSES.get(_text(status.get("status"), "statuses[].status"))
    provider_id = _text(status.get("id"), "statuses[].id")
    if mapped is None:
        return None
    error_code = error_message = None
    if mapped == "failed":
        errors = _list(status.get("errors"), "statuses[].errors")
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        code = first.get("code")
        error_code = str(code) if isinstance(code, int | str) and code != "" else None
        data = first.get("error_data")
        details = _optional_text(data, "details") if isinstance(data, dict) else None
        error_message = describe(
            int(error_code) if error_code is not None and error_code.isdigit() else None,
            _optional_text(first, "message") or _optional_text(first, "title"),
            details,
        )
        if not first:
            error_message = "Meta reported the message failed"
    return StatusEvent(
        status=mapped,
        provider_message_id=provider_id,
        error_code=meta_error_code(error_code) if error_code is not None else None,
        error_message=error_message,
        occurred_at=_timestamp(status.get("timestamp")),
    )


def _describe_message(message: dict[str, Any], kind: str) -> str:
    """A readable body for a message that is not plain text."""
    part = message.get(kind)
    detail: dict[str, Any] = part if isinstance(part, dict) else {}
    if kind == "text":
        return _optional_text(detail, "body") or ""
    if kind == "button":
        return _optional_text(detail, "text") or _optional_text(detail, "payload") or "[button]"
    if kind == "interactive":
        for reply in ("button_reply", "list_reply"):
            chosen = detail.get(reply)
            if isinstance(chosen, dict):
                title = _optional_text(chosen, "title") or _optional_text(chosen, "id")
                if title:
                    return title
        return "[interactive]"
    if kind in _MEDIA_TYPES:
        # the file itself is the message's media (see _media); its caption is the text
        return _optional_text(detail, "caption") or ""
    if kind == "location":
        where = [
            s for s in (_optional_text(detail, "name"), _optional_text(detail, "address")) if s
        ]
        lat, lon = detail.get("latitude"), detail.get("longitude")
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            where.append(f"{lat},{lon}")
        return " ".join(["[location]", *where])
    if kind == "reaction":
        emoji = _optional_text(detail, "emoji")
        return f"[reaction] {emoji}" if emoji else "[reaction removed]"
    return f"[{kind}]"


def _media(message: dict[str, Any], kind: str) -> tuple[InboundMedia, ...]:
    """The file of an image, audio, video, document or sticker message: its media id (fetched
    with the tenant's token from the Graph API) and MIME type."""
    part = message.get(kind)
    if kind not in _MEDIA_TYPES or not isinstance(part, dict):
        return ()
    return (
        InboundMedia(
            kind=kind,
            mime_type=_optional_text(part, "mime_type"),
            provider_media_id=_optional_text(part, "id"),
            caption=_optional_text(part, "caption"),
            filename=_optional_text(part, "filename"),
        ),
    )


def _message(raw: Any, recipient: str) -> InboundMessage:
    message = _object(raw, "messages[]")
    sender = _text(message.get("from"), "messages[].from")
    kind = _optional_text(message, "type") or "unknown"
    return InboundMessage(
        sender=sender if sender.startswith("+") else "+" + sender,
        recipient=recipient,
        body=_describe_message(message, kind),
        provider_message_id=_text(message.get("id"), "messages[].id"),
        occurred_at=_timestamp(message.get("timestamp")),
        media=_media(message, kind),
    )


def parse(payload: Any, *, phone_number_id: str) -> list[Event]:
    """The events in one verified notification that concern ``phone_number_id``."""
    body = _object(payload, "the body")
    if body.get("object") != "whatsapp_business_account":
        raise WebhookPayloadError("Meta notification is not about a WhatsApp Business account")
    events: list[Event] = []
    for raw_entry in _list(body.get("entry"), "entry"):
        entry = _object(raw_entry, "entry[]")
        for raw_change in _list(entry.get("changes"), "entry[].changes"):
            change = _object(raw_change, "changes[]")
            # Template, quality and account updates share the URL; they carry no message state.
            if change.get("field") != "messages":
                continue
            value = _object(change.get("value"), "changes[].value")
            metadata = _object(value.get("metadata"), "value.metadata")
            number_id = _text(metadata.get("phone_number_id"), "metadata.phone_number_id")
            # One app may serve several numbers; only this tenant's number is this tenant's.
            if number_id != phone_number_id:
                continue
            recipient = _optional_text(metadata, "display_phone_number") or number_id
            for raw_status in _list(value.get("statuses"), "value.statuses"):
                event = _status(raw_status)
                if event is not None:
                    events.append(event)
            for raw_message in _list(value.get("messages"), "value.messages"):
                events.append(_message(raw_message, recipient))
    return events
