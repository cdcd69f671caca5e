"""SendGrid's event webhook as delivery statuses.

One request carries a JSON array of events, each ``{"event", "email", "timestamp",
"sg_message_id", ...}`` plus our ``custom_args`` at the top level. ``sg_message_id`` starts with the
``X-Message-Id`` that the send returned, then a dot and a per-recipient suffix.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pipecored import DeliveryStatus, RecipientOptOut, StatusEvent, WebhookPayloadError

# The custom arg that every send carries: our message id, echoed in every event.
MESSAGE_ID_ARG = "pipecore_message_id"

_PROGRESS: dict[str, DeliveryStatus] = {
    "processed": "sent",
    "delivered": "delivered",
    "open": "read",
}
_FAILURES = frozenset({"bounce", "dropped", "spamreport", "blocked"})
# Events that take the address off the tenant's list (SPEC section 9). A "bounce" of type
# "blocked" is a temporary refusal (a reputation block, a full mailbox): not one of them.
_OPT_OUTS: dict[str, Literal["bounce", "complaint", "unsubscribe"]] = {
    "bounce": "bounce",
    "spamreport": "complaint",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "unsubscribe",
}


def provider_message_id(sg_message_id: object) -> str | None:
    """The ``X-Message-Id`` part of ``sg_message_id`` (everything before the first dot)."""
    if not isinstance(sg_message_id, str) or not sg_message_id:
        return None
    return sg_message_id.split(".", 1)[0] or None


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# A suppression keeps this much of the provider's words (a bounce's diagnostic), no more.
MAX_DETAIL_CHARS = 200


def _trimmed(value: object) -> str | None:
    """The provider's reason text without surrounding white space, cut to a list's width."""
    text = value.strip()[:MAX_DETAIL_CHARS].rstrip() if isinstance(value, str) else ""
    return text or None


def _failure(event: dict[str, Any], name: str) -> tuple[str, str]:
    # SendGrid reports a block as a bounce of type "blocked"; keep the two apart in our codes.
    code = "blocked" if name == "bounce" and event.get("type") == "blocked" else name
    if name == "spamreport":
        return code, "the recipient marked the email as spam"
    message = _text(event.get("reason")) or _text(event.get("response"))
    return code, message or f"SendGrid reported {name}"


def _status(event: dict[str, Any]) -> StatusEvent | None:
    name = event.get("event")
    if not isinstance(name, str):
        raise WebhookPayloadError("an event has no event name")
    if name not in _PROGRESS and name not in _FAILURES:
        return None
    provider_id = provider_message_id(event.get("sg_message_id"))
    message_id = _text(event.get(MESSAGE_ID_ARG))
    if provider_id is None and message_id is None:
        return None
    occurred_at = _timestamp(event.get("timestamp"))
    if name in _PROGRESS:
        return StatusEvent(
            status=_PROGRESS[name],
            provider_message_id=provider_id,
            message_id=message_id,
            occurred_at=occurred_at,
        )
    code, message = _failure(event, name)
    return StatusEvent(
        status="failed",
        provider_message_id=provider_id,
        message_id=message_id,
        error_code=code,
        error_message=message,
        occurred_at=occurred_at,
    )


def _opt_out(event: dict[str, Any]) -> RecipientOptOut | None:
    name = event.get("event")
    reason = _OPT_OUTS.get(name) if isinstance(name, str) else None
    if reason is None or (name == "bounce" and event.get("type") == "blocked"):
        return None
    address = _text(event.get("email"))
    if address is None:
        return None
    detail = _trimmed(event.get("reason")) if name == "bounce" else None
    return RecipientOptOut(
        address=address,
        reason=reason,
        provider_message_id=provider_message_id(event.get("sg_message_id")),
        detail=detail,
    )


def parse(body: bytes) -> list[StatusEvent | RecipientOptOut]:
    """The status events in one verified callback; events we do not track give none."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise WebhookPayloadError("the body is not JSON") from None
    if not isinstance(payload, list):
        raise WebhookPayloadError("the body is not a JSON array of events")
    events: list[StatusEvent | RecipientOptOut] = []
    for event in payload:
        if not isinstance(event, dict):
            raise WebhookPayloadError("an event is not a JSON object")
        status = _status(event)
        if status is not None:
            events.append(status)
        opt_out = _opt_out(event)
        if opt_out is not None:
            events.append(opt_out)
    return events
