"""The one outbound HTTP client every provider call goes through.

Provider plugins program against httpx's API. httpx's own connection pool collapses under high
concurrency (encode/httpx#3215: 61 requests/s against a 100 ms provider with 256 in flight, where
raw aiohttp does ~2,300/s), so the client runs on httpx-aiohttp's transport.

The client keeps no cookies, in either layer. It is shared by every tenant: a cookie one
tenant's provider set (a load balancer's affinity cookie, say) would otherwise ride on the next
tenant's calls to that host. Provider APIs authenticate each request by its credentials, never by
a cookie. Not parsing cookies also saves httpx building urllib request objects for every answer.
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from pipecored import __version__

USER_AGENT = f"pipecored/{__version__}"


class _NoCookies(httpx.Cookies):
    """A cookie store that stays empty."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        pass


class OutboundClient(httpx.AsyncClient):
    """httpx's client without a cookie store (see the module's docstring)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, cookies: httpx._types.CookieTypes) -> None:
        pass


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

    def get_client(self) -> aiohttp.ClientSession:
        # httpx-aiohttp's own session, with aiohttp's cookie store swapped for one that keeps
        # nothing
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def outbound_client(*, max_connections: int, timeout: float) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return OutboundClient(
        transport=_Transport(limits=limits, trust_env=False),
        timeout=timeout,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        trust_env=False,
    )
