"""Meta's webhook checks: the subscription handshake and ``X-Hub-Signature-256``.

https://developers.facebook.com/docs/graph-api/webhooks/getting-started: the handshake is a GET
with ``hub.mode=subscribe``, ``hub.verify_token`` and ``hub.challenge``; each notification is a POST
signed with ``sha256=`` + hex(HMAC-SHA256(app secret, raw body)).
"""

from __future__ import annotations

import hashlib
import hmac

from pipecored import WebhookSignatureError

_PREFIX = "sha256="


def verify_token(*, given: str | None, expected: str) -> None:
    """Raise ``WebhookSignatureError`` unless the handshake's verify token is the tenant's."""
    if not given or not expected:
        raise WebhookSignatureError("hub.verify_token does not match")
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise WebhookSignatureError("hub.verify_token does not match")


def verify(*, header: str | None, app_secret: str, body: bytes) -> None:
    """Raise ``WebhookSignatureError`` unless ``header`` signs ``body`` with ``app_secret``."""
    if not header:
        raise WebhookSignatureError("missing X-Hub-Signature-256 header")
    if not app_secret:
        raise WebhookSignatureError("no appSecret configured to check X-Hub-Signature-256")
    value = header.strip()
    if not value.startswith(_PREFIX):
        raise WebhookSignatureError("X-Hub-Signature-256 is not a sha256= signature")
    expected = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    given = value[len(_PREFIX) :].lower().encode("utf-8")
    if not hmac.compare_digest(expected.encode("ascii"), given):
        raise WebhookSignatureError("X-Hub-Signature-256 does not verify")
