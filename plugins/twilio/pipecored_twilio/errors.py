"""Twilio's error answers, classified for the delivery worker.

Twilio answers ``{"code", "message", "more_info", "status"}``
(https://www.twilio.com/docs/usage/twilios-response#response-formats-exceptions). The Twilio code
decides where it is known; the HTTP status decides otherwise.

A 500 is not retried. Twilio's Messages API takes no idempotency key, and a 500 does not say
whether the Message resource was created before the failure: retrying could text the customer
twice. 502, 503 and 504 come from Twilio's edge before the API took the request, and 429/20429 are
refused before anything is created, so those are retried.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from pipecored import ProviderError

PROVIDER = "twilio"

# Revoked or wrong credentials, a suspended account: nothing this tenant sends can succeed now.
_AUTH_CODES = frozenset({20003, 20005})
_AUTH_STATUSES = frozenset({401})
# Account-wide limits (21611: the From number's queue is full; 63038: the account's daily
# message limit): permanent for this message, and the tenant's traffic belongs on its fallback.
_QUOTA_CODES = frozenset({21611, 63038})
_OUTSIDE_WINDOW = 63016
_RETRYABLE_CODES = frozenset({20429, 20503})
_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

_MAX_MESSAGE = 500


def parse_delay(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        seconds = parsedate_to_datetime(text).timestamp() - now
    except (TypeError, ValueError, IndexError):
        return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def retry_after(response: httpx.Response, *, now: float | None = None) -> float | None:
    return parse_delay(response.headers.get("retry-after"), now=time.time() if now is None else now)


def timed_out(exc: httpx.TransportError) -> bool:
    """Whether a failed call ran out of time, rather than failing to connect."""
    if not isinstance(exc, httpx.TimeoutException):
        return False
    # httpx-aiohttp reports every aiohttp connection error, a refused connection included, as
    # ConnectTimeout; the OSError it wraps says that time did not run out.
    cause = exc.__cause__
    return not (isinstance(cause, OSError) and not isinstance(cause, TimeoutError))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Provider text, cut short and with any credential it echoes masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 1] + "…"
    return text


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _twilio_code(body: dict[str, Any]) -> int | None:
    code = body.get("code")
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.isdigit():
        return int(code)
    return None


def classify(response: httpx.Response, *, secrets: Iterable[str] = ()) -> ProviderError:
    """The ``ProviderError`` for a non-2xx answer to ``POST .../Messages.json``."""
    status = response.status_code
    body = _error_body(response)
    code = _twilio_code(body)
    text = body.get("message")
    detail = text if isinstance(text, str) and text else f"HTTP {status}"
    label = f"Twilio error {code}" if code is not None else f"Twilio answered HTTP {status}"

    retryable = False
    unavailable = False
    if code in _AUTH_CODES or status in _AUTH_STATUSES:
        unavailable = True
        detail += " (the account's credentials were refused; check accountSid and authToken)"
    elif code == _OUTSIDE_WINDOW:
        detail += (
            " (outside the WhatsApp 24-hour customer service window: the customer has not"
            " written in the last 24 hours, so only a pre-approved template message can be sent)"
        )
    elif code in _QUOTA_CODES:
        unavailable = True
    elif code in _RETRYABLE_CODES or status in _RETRYABLE_STATUSES:
        retryable = True
    elif status == 500:
        detail += (
            " (not retried: Twilio takes no idempotency key and a 500 does not say whether the"
            " message was created; check the Twilio console before sending it again)"
        )

    return ProviderError(
        scrub(f"{label}: {detail}", secrets),
        retryable=retryable,
        provider=PROVIDER,
        code=str(code) if code is not None else f"http_{status}",
        http_status=status,
        retry_after=retry_after(response),
        unavailable=unavailable,
    )
