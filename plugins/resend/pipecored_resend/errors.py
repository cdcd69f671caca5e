"""Resend's error answers, classified for the delivery worker.

Resend answers ``{"statusCode", "name", "message"}`` (https://resend.com/docs/api-reference/errors).
``name`` is documented and stable, so it decides; the HTTP status decides when it is missing or new.
Every retry of a send is safe: each carries an ``Idempotency-Key``, so Resend answers a repeated
call with the first call's result instead of sending again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import httpx

from pipecored import ProviderError, parse_retry_after, scrub_secrets

PROVIDER = "resend"

# The account cannot send at all now: move the tenant's traffic to its fallback at once.
_QUOTA_NAMES = frozenset({"daily_quota_exceeded", "monthly_quota_exceeded"})
_CREDENTIAL_NAMES = frozenset({"missing_api_key", "invalid_api_key", "restricted_api_key"})
_CREDENTIAL_STATUSES = frozenset({401, 403})

# concurrent_idempotent_requests: our own earlier attempt is still in flight at Resend; asking
# again later returns its result.
_RETRYABLE_NAMES = frozenset(
    {
        "rate_limit_exceeded",
        "concurrent_idempotent_requests",
        "application_error",
        "internal_server_error",
    }
)
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def retry_after(response: httpx.Response, *, now: float | None = None) -> float | None:
    """``retry-after`` when present, else ``ratelimit-reset`` (seconds until the window resets)."""
    delay = parse_retry_after(response.headers.get("retry-after"), now=now)
    if delay is None:
        delay = parse_retry_after(response.headers.get("ratelimit-reset"), now=now)
    return delay


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def classify(response: httpx.Response, secrets: Iterable[str] = ()) -> ProviderError:
    """The ``ProviderError`` for a non-2xx answer from Resend's API (``POST /emails``,
    ``GET /emails/receiving/{id}``)."""
    status = response.status_code
    body = _error_body(response)
    name = body.get("name")
    name = name if isinstance(name, str) and _CODE.fullmatch(name) else None
    text = body.get("message")
    message = (
        scrub_secrets(text, secrets)
        if isinstance(text, str) and text
        else f"Resend answered HTTP {status}"
    )

    unavailable = False
    if name in _QUOTA_NAMES or name in _CREDENTIAL_NAMES or status in _CREDENTIAL_STATUSES:
        # 401/403 without a credential name are still account-wide: Resend uses them for a
        # deleted key (validation_error) and for an unverified sending domain.
        retryable, unavailable = False, True
    elif name in _RETRYABLE_NAMES or status in _RETRYABLE_STATUSES:
        retryable = True
    else:
        retryable = False

    return ProviderError(
        message,
        retryable=retryable,
        provider=PROVIDER,
        code=name or f"http_{status}",
        http_status=status,
        retry_after=retry_after(response),
        unavailable=unavailable,
    )


def invalid_answer(response: httpx.Response, expected: str) -> ProviderError:
    """A 2xx answer without what it should carry: asking again is safe (both calls are
    idempotent), so it is retryable."""
    return ProviderError(
        f"Resend answered HTTP {response.status_code} without {expected}",
        retryable=True,
        provider=PROVIDER,
        code="invalid_response",
        http_status=response.status_code,
    )
