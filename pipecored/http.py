"""The one outbound HTTP client every provider call goes through.

Provider plugins program against httpx's API. httpx's own connection pool collapses under high
concurrency (encode/httpx#3215: 61 requests/s against a 100 ms provider with 256 in flight, where
raw aiohttp does ~2,300/s), so the client runs on httpx-aiohttp's transport.
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from pipecored import __version__

USER_AGENT = f"pipecored/{__version__}"


class _Transport(AiohttpTransport):
    """httpx-aiohttp maps every aiohttp connection error to ``httpx.ConnectTimeout`` (0.2.0), so
    a refused connection would look like a timeout; give it back its real class."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if cause is None or isinstance(
                cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError
            ):
                raise
            raise httpx.ConnectError(str(exc) or type(cause).__name__, request=request) from cause


def outbound_client(*, max_connections: int, timeout: float) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(
        transport=_Transport(limits=limits, trust_env=False),
        timeout=timeout,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        trust_env=False,
    )
