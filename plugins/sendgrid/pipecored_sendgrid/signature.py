"""SendGrid's signed event webhooks: ECDSA P-256 / SHA-256.

SendGrid signs ``X-Twilio-Email-Event-Webhook-Timestamp`` followed by the raw body, and sends the
base64 DER signature in ``X-Twilio-Email-Event-Webhook-Signature``. The verification key is the
base64 DER public key shown in SendGrid's Mail Settings. A timestamp more than ten minutes from
when the request arrived is refused, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from pipecored import WebhookSignatureError

TOLERANCE = timedelta(minutes=10)
SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The P-256 key from base64 DER, as SendGrid shows it (PEM is accepted too)."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode("ascii"))
        else:
            key = load_der_public_key(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError, TypeError, UnicodeEncodeError):
        raise WebhookSignatureError("webhookPublicKey is not a base64 DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise WebhookSignatureError("webhookPublicKey is not a P-256 (prime256v1) key")
    return key


def _check_timestamp(value: str, received_at: datetime) -> None:
    if not value.isascii() or not value.isdigit():
        raise WebhookSignatureError(f"{TIMESTAMP_HEADER} is not a UNIX timestamp")
    try:
        signed_at = datetime.fromtimestamp(int(value), tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise WebhookSignatureError(f"{TIMESTAMP_HEADER} is not a UNIX timestamp") from None
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=UTC)
    if abs(signed_at - received_at) > TOLERANCE:
        raise WebhookSignatureError(f"{TIMESTAMP_HEADER} is outside the 10-minute tolerance")


def verify(
    headers: Mapping[str, str], body: bytes, *, public_key: str | None, received_at: datetime
) -> None:
    """Raise ``WebhookSignatureError`` unless the signature verifies with ``public_key``."""
    if not public_key:
        raise WebhookSignatureError(
            "no webhookPublicKey is configured for this tenant; unsigned callbacks are refused"
        )
    encoded = headers.get(SIGNATURE_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    if not encoded or not timestamp:
        raise WebhookSignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    _check_timestamp(timestamp, received_at)
    key = load_public_key(public_key)
    try:
        der_signature = base64.b64decode(encoded, validate=True)
        key.verify(der_signature, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise WebhookSignatureError("the event webhook signature does not verify") from None
