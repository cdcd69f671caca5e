"""SendGrid's error answers, classified for the delivery worker.

SendGrid answers ``{"errors": [{"message", "field", "help"}]}``; the HTTP status decides
(https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors). SendGrid has no idempotency
key, so a retried 5xx or timeout can send a second copy: we retry anyway, because a duplicate
confirmation is a smaller harm than a lost one, and every copy carries our id in ``custom_args``
so its webhook events still find the message.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable
from typing import Any

import httpx

from pipecored import ProviderError, parse_retry_after, scrub_secrets

PROVIDER = "sendgrid"

# A bad or revoked key, or a sender identity SendGrid no longer accepts: every message for this
# tenant would fail the same way, so the host moves to the fallback at once.
_CREDENTIAL_STATUSES = frozenset({401, 403})
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

_MAX_FIELD = 48


def parse_reset(value: str | None, *, now: float) -> float | None:
    """Seconds until ``X-RateLimit-Reset``, a UNIX timestamp; 0 when it has passed."""
    if value is None:
        return None
    try:
        reset = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(reset):
        return None
    return max(0.0, reset - now)


def retry_after(response: httpx.Response, *, now: float | None = None) -> float | None:
    """``X-RateLimit-Reset`` (what SendGrid sends with a 429), else ``Retry-After``."""
    current = time.time() if now is None else now
    delay = parse_reset(response.headers.get("x-ratelimit-reset"), now=current)
    if delay is None:
        delay = parse_retry_after(response.headers.get("retry-after"), now=current)
    return delay


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return [e for e in errors if isinstance(e, dict)]


def _field_code(field: object) -> str | None:
    """``invalid_personalizations_to_email`` from ``personalizations.0.to.0.email``: array
    indexes and punctuation dropped, so the code is the same whichever recipient was wrong."""
    if not isinstance(field, str) or field in ("", "null"):
        return None
    slug = re.sub(r"[^a-z]+", "_", field.lower()).strip("_")[:_MAX_FIELD].rstrip("_")
    return f"invalid_{slug}" if slug else None


def classify(response: httpx.Response, secrets: Iterable[str] = ()) -> ProviderError:
    """The ``ProviderError`` for a non-2xx answer to ``POST /v3/mail/send``."""
    status = response.status_code
    errors = _errors(response)
    first = errors[0] if errors else {}
    text = first.get("message")
    message = (
        scrub_secrets(text, secrets)
        if isinstance(text, str) and text
        else f"SendGrid answered HTTP {status}"
    )
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"

    unavailable = status in _CREDENTIAL_STATUSES
    retryable = status in _RETRYABLE_STATUSES
    field_code = None if retryable or unavailable else _field_code(first.get("field"))
    return ProviderError(
        message,
        retryable=retryable,
        provider=PROVIDER,
        code=field_code or f"http_{status}",
        http_status=status,
        retry_after=retry_after(response),
        unavailable=unavailable,
    )
