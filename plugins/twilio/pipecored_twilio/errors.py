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

from collections.abc import Iterable
from typing import Any

import httpx

from pipecored import ProviderError, parse_retry_after, scrub_secrets

PROVIDER = "twilio"

# Revoked or wrong credentials, a suspended account: nothing this tenant sends can succeed now.
_AUTH_CODES = frozenset({20003, 20005})
_AUTH_STATUSES = frozenset({401})
# Account-wide limits (21611: the From number's queue is full; 63038: the account's daily
# message limit): permanent for this message, and the tenant's traffic belongs on its fallback.
_QUOTA_CODES = frozenset({21611, 63038})
_OUTSIDE_WINDOW = 63016
# what pipecored calls "send a template instead" (SPEC: errorCode template_required)
TEMPLATE_REQUIRED = "template_required"
_RETRYABLE_CODES = frozenset({20429, 20503})
_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


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


def error_code(code: object) -> str:
    """Twilio's code as the message's errorCode: outside the 24-hour window is
    ``template_required``, whether Twilio said so at once or in a status callback."""
    return TEMPLATE_REQUIRED if str(code) == str(_OUTSIDE_WINDOW) else str(code)


def _error_code(code: int | None, status: int) -> str:
    return error_code(code) if code is not None else f"http_{status}"


def classify(response: httpx.Response, secrets: Iterable[str] = ()) -> ProviderError:
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
        scrub_secrets(f"{label}: {detail}", secrets),
        retryable=retryable,
        provider=PROVIDER,
        code=_error_code(code, status),
        http_status=status,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        unavailable=unavailable,
    )
