"""The one outbound HTTP client every provider call goes through.

Provider plugins program against httpx's API, and only its narrow, stable part: what
``SendContext.http`` promises is an ``httpx.AsyncClient`` to call ``get``/``post``/``request``
on (with ``auth``, ``headers``, ``json``/``data``/``content``, ``timeout``) and the
``httpx.Response`` and ``httpx.TransportError`` family that come back. The classes below are
private: plugins never see the transport, so it can change (see docs/dependencies.md for how the
client would move to a maintained continuation of httpx with the same API).

httpx's own connection pool collapses under high concurrency (encode/httpx#3215: 61 requests/s
against a 100 ms provider with 256 in flight, where raw aiohttp does ~2,300/s), so the client
runs on httpx-aiohttp's transport. The transport subclass below uses that package's internals
(``get_client``, ``map_aiohttp_exceptions``, ``limits``): pyproject pins it below its next minor
release.

The client keeps no cookies, in either layer. It is shared by every tenant: a cookie one
tenant's provider set (a load balancer's affinity cookie, say) would otherwise ride on the next
tenant's calls to that host. Provider APIs authenticate each request by its credentials, never by
a cookie. Not parsing cookies also saves httpx building urllib request objects for every answer.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions

from pipecored import __version__

USER_AGENT = f"pipecored/{__version__}"
MAX_ANSWER_BYTES = 10 * 1024 * 1024


class _NoCookies(httpx.Cookies):
    """A cookie store that stays empty."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        pass


_DEFAULT = httpx.USE_CLIENT_DEFAULT


class _OutboundClient(httpx.AsyncClient):
    """httpx's client without a cookie store (see the module's docstring), and with a shorter
    path for the calls providers make.

    ``request()`` (which ``get``/``post``/... call) builds the same :class:`httpx.Request`
    httpx would (the client's headers, then the call's; the body encoded by httpx; Basic auth
    from a ``(user, password)`` tuple) and hands it straight to the transport, skipping what
    this client never uses per call: URL and cookie merging, the auth and redirect generators,
    event hooks, proxy mounts and the response stream wrapper. Under load httpx's machinery
    around aiohttp cost more interpreter time than aiohttp itself. A call using anything else
    (``params``, ``files``, ``cookies``, ``extensions``, another auth, following redirects)
    takes httpx's own path.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, cookies: httpx._types.CookieTypes) -> None:
        pass

    async def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: httpx._types.RequestContent | None = None,
        data: httpx._types.RequestData | None = None,
        files: httpx._types.RequestFiles | None = None,
        json: Any | None = None,
        params: httpx._types.QueryParamTypes | None = None,
        headers: httpx._types.HeaderTypes | None = None,
        cookies: httpx._types.CookieTypes | None = None,
        auth: httpx._types.AuthTypes | httpx._client.UseClientDefault | None = _DEFAULT,
        follow_redirects: bool | httpx._client.UseClientDefault = _DEFAULT,
        timeout: httpx._types.TimeoutTypes | httpx._client.UseClientDefault = _DEFAULT,  # noqa: ASYNC109 (httpx's signature)
        extensions: httpx._types.RequestExtensions | None = None,
    ) -> httpx.Response:
        if auth is _DEFAULT:
            auth = self._auth
        transport = self._transport
        if (
            files is not None
            or params is not None
            or cookies is not None
            or extensions
            or follow_redirects is True
            or not (auth is None or _basic_pair(auth))
            or not isinstance(url, str)
            or not url.startswith(("http://", "https://"))
            or "@" in url  # credentials in the URL: httpx's path turns them into Basic auth
            or self._mounts
            or self._event_hooks["request"]
            or self._event_hooks["response"]
            or self._base_url.raw_host
            or not isinstance(transport, _Transport)
        ):
            return await super().request(
                method,
                url,
                content=content,
                data=data,
                files=files,
                json=json,
                params=params,
                headers=headers,
                cookies=cookies,
                auth=auth,
                follow_redirects=follow_redirects,
                timeout=timeout,
                extensions=extensions,
            )
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        merged = httpx.Headers(self.headers)
        if headers is not None:
            merged.update(headers)
        limits = self.timeout if timeout is _DEFAULT else httpx.Timeout(timeout)  # type: ignore[arg-type]
        request = httpx.Request(
            method,
            url,
            content=content,
            data=data,
            json=json,
            headers=merged,
            extensions={"timeout": limits.as_dict()},
        )
        if auth is not None:  # set as httpx's BasicAuth flow sets it: after the request is built
            user, password = auth  # type: ignore[misc]
            request.headers["Authorization"] = httpx.BasicAuth(user, password)._auth_header
        self._state = httpx._client.ClientState.OPENED
        start = time.perf_counter()
        with httpx._exceptions.request_context(request=request):
            response = await transport.handle_async_request(request)
        response.request = request
        response.default_encoding = self._default_encoding
        response.elapsed = timedelta(seconds=time.perf_counter() - start)
        return response


def _basic_pair(auth: object) -> bool:
    return (
        isinstance(auth, tuple)
        and len(auth) == 2
        and all(isinstance(part, str | bytes) for part in auth)
    )


class _Transport(AiohttpTransport):
    """httpx-aiohttp's transport, with two changes.

    - It maps every aiohttp connection error to ``httpx.ConnectTimeout`` (0.2.0), so a refused
      connection would look like a timeout: the real class is given back.
    - The answer is read whole here, with aiohttp's ``read()``, and handed to httpx as content:
      provider answers are small JSON documents, and streaming them through httpx's and the
      transport's async iterators cost 8% of the event loop's time under load. An answer over
      :data:`MAX_ANSWER_BYTES` is refused rather than held in memory.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if cause is None or isinstance(
                cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError
            ):
                raise
            raise httpx.ConnectError(str(exc) or type(cause).__name__, request=request) from cause

    async def _request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        timeout = request.extensions.get("timeout", {})
        data: bytes | httpx.AsyncByteStream | None
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            data = request.stream  # type: ignore[assignment]
            request.headers.pop("transfer-encoding", None)  # aiohttp frames the body itself
        with map_aiohttp_exceptions():
            async with self.client.request(
                method=request.method,
                url=str(request.url),
                headers=request.headers,
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
                server_hostname=request.extensions.get("sni_hostname"),
            ) as answer:
                if (answer.content_length or 0) > MAX_ANSWER_BYTES:
                    raise httpx.ReadError(f"answer over {MAX_ANSWER_BYTES} bytes", request=request)
                chunks: list[bytes] = []
                size = 0
                async for chunk in answer.content.iter_any():
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        raise httpx.ReadError(
                            f"answer over {MAX_ANSWER_BYTES} bytes", request=request
                        )
                    chunks.append(chunk)
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if answer.reason:
            extensions["reason_phrase"] = answer.reason.encode()
        return httpx.Response(
            status_code=answer.status,
            headers=answer.raw_headers,
            content=b"".join(chunks),
            request=request,
            extensions=extensions,
        )

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
    return _OutboundClient(
        transport=_Transport(limits=limits, trust_env=False),
        timeout=timeout,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        trust_env=False,
    )
