"""The WhatsApp Cloud API's error answers, classified for the delivery worker.

Graph answers ``{"error": {"message", "type", "code", "error_subcode", "error_data": {"details"},
"is_transient", "fbtrace_id"}}``. Meta documents the meaning of ``code``
(https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes), not of the HTTP
status, which is 400 for most failures whatever their cause: the code decides, and the status only
when the answer carries no Graph error (a proxy's 502 page, say).

Sending twice is the risk of every retry, since the Cloud API takes no idempotency key; the codes
retried here are refusals (rate limits, throttling, an unavailable service) that Meta documents as
made before the message was accepted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from pipecored import ProviderError, parse_retry_after, scrub_secrets

PROVIDER = "meta"

OUTSIDE_WINDOW = 131047
# what pipecored calls "send a template instead" (SPEC: errorCode template_required)
TEMPLATE_REQUIRED = "template_required"


def error_code(code: object) -> str:
    """Meta's code as the message's errorCode: outside the 24-hour window is
    ``template_required``, whether Meta said so at once or in a status webhook."""
    return TEMPLATE_REQUIRED if str(code) == str(OUTSIDE_WINDOW) else str(code)


# 1 API unknown, 2 API service, 4 app rate limit, 80007 WABA rate limit, 130429 throughput,
# 131056 pair rate limit, 131016 service temporarily unavailable.
_RETRYABLE_CODES = frozenset({1, 2, 4, 80007, 130429, 131016, 131056})
# 0 and 190: the access token is expired, revoked or invalid; 10 and 200-299: the token lacks a
# permission; 131031: the WhatsApp Business account is locked. Nothing sends until an operator
# acts, so the tenant's traffic moves to its fallback at once.
_UNAVAILABLE_CODES = frozenset({0, 10, 190, 131031})
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

OUTSIDE_WINDOW_HINT = (
    "outside the WhatsApp 24-hour customer service window: the customer has not written in the"
    " last 24 hours, so only a pre-approved template message can be sent"
)


def is_unavailable_code(code: int) -> bool:
    return code in _UNAVAILABLE_CODES or 200 <= code <= 299


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _graph_error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def describe(code: int | None, message: str | None, details: str | None) -> str:
    """One line for a Graph error: Meta's message, its details, and what the code means for us."""
    text = message or "no message"
    if details and details != message:
        text = f"{text}: {details}"
    if code == OUTSIDE_WINDOW:
        text = f"{text} ({OUTSIDE_WINDOW_HINT})"
    return text


def classify(response: httpx.Response, secrets: Iterable[str] = ()) -> ProviderError:
    """The ``ProviderError`` for a non-2xx answer to ``POST .../messages``."""
    status = response.status_code
    error = _graph_error(response)
    code = _int(error.get("code"))
    subcode = _int(error.get("error_subcode"))
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    text = error.get("message")
    retry_after = parse_retry_after(response.headers.get("retry-after"))

    if code is None:
        retryable = status in _RETRYABLE_STATUSES
        return ProviderError(
            f"Meta answered HTTP {status} without a Graph error",
            retryable=retryable,
            provider=PROVIDER,
            code=f"http_{status}",
            http_status=status,
            retry_after=retry_after,
        )

    retryable = False
    unavailable = False
    if code == OUTSIDE_WINDOW:
        pass
    elif is_unavailable_code(code):
        unavailable = True
    elif code in _RETRYABLE_CODES or error.get("is_transient") is True:
        retryable = True

    label = f"Meta error {code}" + (f" (subcode {subcode})" if subcode is not None else "")
    message = describe(
        code,
        text if isinstance(text, str) else None,
        details if isinstance(details, str) else None,
    )
    return ProviderError(
        scrub_secrets(f"{label}: {message}", secrets),
        retryable=retryable,
        provider=PROVIDER,
        code=error_code(code),
        http_status=status,
        retry_after=retry_after,
        unavailable=unavailable,
    )
