"""Calling a provider over HTTP: what every provider plugin needs the same way.

- :func:`call_provider` bounds one call as a whole and turns transport failures into
  ``ProviderError``: a timeout is ``ProviderTimeout``; a refused, reset or dropped connection is a
  retryable ``connection_error``.
- :func:`parse_retry_after` reads ``Retry-After``-style values (seconds or an HTTP date).
- :func:`scrub_secrets` makes provider text safe to record: credentials it echoes are masked in
  every form they take on the wire (URL-encoded, JSON-escaped, base64 as in a Basic-auth header)
  and it is cut to a sensible length.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Iterable
from email.utils import parsedate_to_datetime

import httpx

from pipecored.errors import ProviderError, ProviderTimeout
from pipecored.masking import SecretScrubber, scrubber_for

MAX_ERROR_TEXT = 500


def scrub_secrets(text: str, secrets: Iterable[str], *, limit: int = MAX_ERROR_TEXT) -> str:
    """``text`` with every form of each secret masked (:func:`pipecored.masking.wire_forms`):
    a provider that echoes a request may show a credential URL-encoded, JSON-escaped or inside
    the base64 of a Basic-auth header. ``secrets`` is a route's few credentials, or a whole
    configuration's (``snapshot.secrets``), whose scrubber is built once and shared."""
    scrub = scrubber_for(secrets) if isinstance(secrets, frozenset) else SecretScrubber(secrets)
    text = scrub(text, show_tail=False)
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


from collections.abc import Callable, Mapping  # noqa: E402 (added with request_provider, below)


async def request_provider(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    timeout: float,  # noqa: ASYNC109 (the plugin passes ctx.timeout; call_provider applies it)
    secrets: Iterable[str] = (),
    classify: Callable[[httpx.Response, list[str]], ProviderError] | None = None,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    data: Mapping[str, str | list[str]] | None = None,  # form fields; a list repeats a field
    json: object = None,
    auth: tuple[str, str] | None = None,
) -> httpx.Response:
    """One call to a provider's API, made as every plugin makes it: ``http.request`` with
    pipecored's ``User-Agent`` (unless ``headers`` names another), bounded as a whole by
    :func:`call_provider`, and a non-2xx answer raised as ``classify(response, secrets)`` (the
    plugin's reading of its provider's errors; without ``classify`` it is returned)."""
    # Imported here: pipecored.http imports the package, which imports this module.
    from pipecored.http import USER_AGENT

    sent_headers = dict(headers or {})
    if not any(name.lower() == "user-agent" for name in sent_headers):
        sent_headers = {"User-Agent": USER_AGENT, **sent_headers}
    known_secrets = list(secrets)
    response = await call_provider(
        http.request(
            method,
            url,
            headers=sent_headers,
            content=content,
            data=data,
            json=json,
            auth=auth,
            timeout=timeout,
        ),
        provider=provider,
        timeout=timeout,
        secrets=known_secrets,
    )
    if classify is not None and not response.is_success:
        raise classify(response, known_secrets)
    return response
