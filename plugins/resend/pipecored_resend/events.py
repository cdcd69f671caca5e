"""Resend's webhook events as delivery statuses and inbound messages.

Payload shapes are the ``webhooks:`` section of Resend's OpenAPI document: one event per request,
``{"type", "created_at", "data": {"email_id", ...}}``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pipecored import (
    DeliveryStatus,
    InboundMessage,
    RecipientOptOut,
    StatusEvent,
    WebhookPayloadError,
    parse_mailbox,
)

_PROGRESS: dict[str, DeliveryStatus] = {
    "email.sent": "sent",
    "email.delivered": "delivered",
    "email.opened": "read",
}
# Event type -> error code of the failed status. email.suppressed: Resend refused to send to an
# address on its suppression list, so the message will never arrive.
_FAILURES = {
    "email.bounced": "bounced",
    "email.complained": "complained",
    "email.failed": "failed",
    "email.suppressed": "suppressed",
}
_INBOUND = "email.received"


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def text_of(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _failure_message(event_type: str, data: dict[str, Any]) -> str:
    if event_type == "email.complained":
        return "the recipient marked the email as spam"
    key, fallback = {
        "email.bounced": ("bounce", "the recipient's mail server rejected the email"),
        "email.failed": ("failed", "Resend could not send the email"),
        "email.suppressed": ("suppressed", "the address is on Resend's suppression list"),
    }[event_type]
    detail = data.get(key)
    if not isinstance(detail, dict):
        return fallback
    return text_of(detail.get("message")) or text_of(detail.get("reason")) or fallback


def _inbound(data: dict[str, Any], email_id: str, occurred_at: datetime | None) -> InboundMessage:
    sender = data.get("from")
    recipients = data.get("to")
    if not isinstance(sender, str) or not isinstance(recipients, list) or not recipients:
        raise WebhookPayloadError("email.received needs data.from and data.to")
    recipient = recipients[0] if isinstance(recipients[0], str) else ""
    mailbox = parse_mailbox(sender)
    return InboundMessage(
        sender=mailbox[1] if mailbox else sender,
        recipient=recipient,
        # the event carries the headers only: the provider fetches the body
        # (GET /emails/receiving/{email_id}, received_body)
        body="",
        provider_message_id=email_id,
        subject=text_of(data.get("subject")),
        occurred_at=occurred_at,
    )


def received_body(email: dict[str, Any]) -> str:
    """The body of a received email (Resend's ``GetReceivedEmailResponse``): its plain text,
    else its HTML, else nothing."""
    return text_of(email.get("text")) or text_of(email.get("html")) or ""


# A suppression keeps this much of the provider's words (a bounce's diagnostic), no more.
MAX_DETAIL_CHARS = 200


def _trimmed(value: object) -> str | None:
    """The provider's reason text without surrounding white space, cut to a list's width."""
    text = value.strip()[:MAX_DETAIL_CHARS].rstrip() if isinstance(value, str) else ""
    return text or None


def _opt_outs(event_type: str, data: dict[str, Any], email_id: str) -> list[RecipientOptOut]:
    """The addresses a hard bounce or a complaint takes off the tenant's list (SPEC section 9):
    a bounce only when Resend calls it Permanent (a full mailbox or a greylisting is Transient,
    and the next email may well arrive)."""
    if event_type == "email.complained":
        reason: Literal["bounce", "complaint"] = "complaint"
        detail = None
    elif event_type == "email.bounced":
        bounce = data.get("bounce")
        if not isinstance(bounce, dict) or bounce.get("type") != "Permanent":
            return []
        reason = "bounce"
        detail = _trimmed(bounce.get("message"))
    else:
        return []
    recipients = data.get("to")
    addresses = (
        [a for a in recipients if isinstance(a, str) and a] if isinstance(recipients, list) else []
    )
    return [
        RecipientOptOut(
            address=address,
            reason=reason,
            provider_message_id=email_id,
            detail=detail,
        )
        for address in addresses
    ]


def parse(body: bytes) -> list[StatusEvent | InboundMessage | RecipientOptOut]:
    """The events in one verified Resend callback; event types we do not track give none."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise WebhookPayloadError("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookPayloadError("the body is not a JSON object")
    event_type = payload.get("type")
    data = payload.get("data")
    if not isinstance(event_type, str) or not isinstance(data, dict):
        raise WebhookPayloadError("an event needs a type and a data object")
    if event_type not in _PROGRESS and event_type not in _FAILURES and event_type != _INBOUND:
        return []

    email_id = data.get("email_id")
    if not isinstance(email_id, str) or not email_id:
        raise WebhookPayloadError(f"{event_type} has no data.email_id")
    occurred_at = _timestamp(payload.get("created_at")) or _timestamp(data.get("created_at"))

    if event_type == _INBOUND:
        return [_inbound(data, email_id, occurred_at)]
    if event_type in _PROGRESS:
        return [
            StatusEvent(
                status=_PROGRESS[event_type],
                provider_message_id=email_id,
                occurred_at=occurred_at,
            )
        ]
    failed = StatusEvent(
        status="failed",
        provider_message_id=email_id,
        error_code=_FAILURES[event_type],
        error_message=_failure_message(event_type, data),
        occurred_at=occurred_at,
    )
    return [failed, *_opt_outs(event_type, data, email_id)]
