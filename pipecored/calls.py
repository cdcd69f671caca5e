"""Calling a provider over HTTP: what every provider plugin needs the same way.

- :func:`call_provider` bounds one call as a whole and turns transport failures into
  ``ProviderError``: a timeout is ``ProviderTimeout``; a refused, reset or dropped connection is a
  retryable ``connection_error``.
- :func:`parse_retry_after` reads ``Retry-After``-style values (seconds or an HTTP date).
- :func:`scrub_secrets` makes provider text safe to record: credentials it echoes are masked and
  it is cut to a sensible length.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Iterable
from email.utils import parsedate_to_datetime

import httpx

from pipecored.errors import ProviderError, ProviderTimeout

MAX_ERROR_TEXT = 500
_MIN_SECRET_TO_MASK = 4  # shorter values would mask ordinary words in the text


def scrub_secrets(text: str, secrets: Iterable[str], *, limit: int = MAX_ERROR_TEXT) -> str:
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_TO_MASK:
            text = text.replace(secret, "****")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After``-style value: delta seconds or an HTTP date.
    ``None`` when absent or unreadable; never negative."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - (
                time.time() if now is None else now
            )
        except (TypeError, ValueError, IndexError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


async def call_provider(
    request: Awaitable[httpx.Response],
    *,
    provider: str,
    timeout: float,  # noqa: ASYNC109 (the plugin passes ctx.timeout; the bound is applied here)
    secrets: Iterable[str] = (),
) -> httpx.Response:
    """Await one provider call (``ctx.http.post(...)``), bounded as a whole by ``timeout``:
    httpx's own timeout bounds each phase (connect, each read), not the call."""
    try:
        async with asyncio.timeout(timeout):
            return await request
    except TimeoutError:
        raise ProviderTimeout(provider=provider) from None
    except httpx.TimeoutException:
        raise ProviderTimeout(provider=provider) from None
    except httpx.TransportError as exc:
        raise ProviderError(
            scrub_secrets(f"could not reach {provider}: {type(exc).__name__}: {exc}", secrets),
            retryable=True,
            provider=provider,
            code="connection_error",
        ) from None
