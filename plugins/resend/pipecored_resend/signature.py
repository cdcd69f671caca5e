"""Svix webhook signatures, as Resend signs its callbacks.

``svix-signature`` lists ``v1,<base64 HMAC-SHA256>`` entries separated by spaces (several while a
secret is being rotated); the HMAC covers ``{svix-id}.{svix-timestamp}.{raw body}`` and is keyed
with the base64-decoded part of ``whsec_...``. A timestamp more than five minutes from when the
request arrived is refused, in either direction, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from pipecored import WebhookSignatureError

TOLERANCE = timedelta(minutes=5)
_KEY_PREFIX = "whsec_"


def _signing_key(secret: str) -> bytes:
    encoded = secret.removeprefix(_KEY_PREFIX)
    try:
        # Svix secrets are sometimes shown without their base64 padding.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSignatureError("webhookSecret is not a valid whsec_ secret") from None
    if not key:
        raise WebhookSignatureError("webhookSecret is not a valid whsec_ secret")
    return key


def _timestamp(value: str, received_at: datetime) -> None:
    if not value.isascii() or not value.isdigit():
        raise WebhookSignatureError("svix-timestamp is not a UNIX timestamp")
    try:
        sent_at = datetime.fromtimestamp(int(value), tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise WebhookSignatureError("svix-timestamp is not a UNIX timestamp") from None
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=UTC)
    if abs(sent_at - received_at) > TOLERANCE:
        raise WebhookSignatureError("svix-timestamp is outside the 5-minute tolerance")


def verify(
    headers: Mapping[str, str], body: bytes, *, secret: str | None, received_at: datetime
) -> None:
    """Raise ``WebhookSignatureError`` unless one ``v1`` signature matches."""
    if not secret:
        raise WebhookSignatureError(
            "no webhookSecret is configured for this tenant; unsigned callbacks are refused"
        )
    msg_id = headers.get("svix-id")
    timestamp = headers.get("svix-timestamp")
    signatures = headers.get("svix-signature")
    if not msg_id or not timestamp or not signatures:
        raise WebhookSignatureError("missing svix-id, svix-timestamp or svix-signature")
    _timestamp(timestamp, received_at)

    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = hmac.new(_signing_key(secret), signed, hashlib.sha256).digest()
    matched = False
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        # Every entry is compared, so the time taken does not reveal which one matched.
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookSignatureError("no svix-signature matches")
