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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import httpx
import yarl
from httpx._content import encode_request
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions

from pipecored import __version__

USER_AGENT = f"pipecored/{__version__}"
MAX_ANSWER_BYTES = 10 * 1024 * 1024
RawHeaders = tuple[tuple[bytes, bytes], ...]


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

    ``request()`` (which ``get``/``post``/... call) puts on the wire what httpx would (the same
    headers in the same order, the body encoded by httpx's own ``encode_request``, Basic auth
    from a ``(user, password)`` tuple) and hands it straight to the transport as aiohttp's
    arguments, skipping what this client never uses per call: the :class:`httpx.Request`
    (built only if the answer's ``request`` or ``url`` is read, or an exception needs it: see
    :class:`_Call`), URL and cookie merging, the auth and redirect generators, event hooks,
    proxy mounts and the response stream wrapper. Under load httpx's machinery around aiohttp
    cost more interpreter time than aiohttp itself. A call using anything else (``params``,
    ``files``, ``cookies``, ``extensions``, another auth, following redirects, a streamed body,
    headers that are not ``str``) takes httpx's own path; ``tests/test_http_client.py``
    checks that both put the same bytes on the wire.
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
        sent: list[tuple[str, str]] | None = None
        if not (
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
            if self.is_closed:
                raise RuntimeError("Cannot send a request, as the client has been closed.")
            body_headers, stream = encode_request(content=content, data=data, json=json)
            if isinstance(stream, httpx.ByteStream):  # not a streamed body
                method = method.upper()
                # aiohttp parses the URL with yarl in any case: parsed once, here (one yarl
                # refuses goes through httpx, which raises its own InvalidURL as before)
                try:
                    target = yarl.URL(url)
                    host = target.host_port_subcomponent
                except ValueError:
                    host = None
                if host is not None:
                    sent = _wire_headers(
                        self.headers,
                        headers,
                        body_headers,
                        method,
                        host,
                        auth,  # type: ignore[arg-type]
                    )
        if sent is None:
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
        assert isinstance(url, str) and isinstance(transport, _Transport)
        body = b"".join(stream)  # type: ignore[arg-type]
        limits = self.timeout if timeout is _DEFAULT else httpx.Timeout(timeout)  # type: ignore[arg-type]
        call = _Call(method, url, sent, body, limits)
        self._state = httpx._client.ClientState.OPENED
        start = time.perf_counter()
        try:
            status, answer_headers, answer, reason = await transport.exchange(
                method, target, _joined(sent), body, limits.as_dict()
            )
            response = _Answer.read_whole(status, answer_headers, answer, reason)
        except httpx.RequestError as exc:
            exc.request = call.request()
            raise
        response.call = call
        response.default_encoding = self._default_encoding
        response.elapsed = timedelta(seconds=time.perf_counter() - start)
        return response


@dataclass(frozen=True, slots=True)
class _Call:
    """What the short path sent, kept to build the :class:`httpx.Request` only when asked for
    (``response.request``, ``response.url``, an exception's ``request``): most answers are read
    for their status and JSON, and building the request parses the URL and the headers again."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    timeout: httpx.Timeout

    def request(self) -> httpx.Request:
        return httpx.Request(
            self.method,
            self.url,
            headers=self.headers,
            content=self.body,
            extensions={"timeout": self.timeout.as_dict()},
        )


class _Answer(httpx.Response):
    """An ``httpx.Response`` whose ``request`` is built from its :class:`_Call` when first read."""

    call: _Call | None = None

    @property
    def request(self) -> httpx.Request:
        if self._request is None and self.call is not None:
            self._request = self.call.request()
        return super().request

    @request.setter
    def request(self, value: httpx.Request) -> None:
        self._request = value

    def raise_for_status(self) -> httpx.Response:
        self.request  # noqa: B018 (built before httpx reads it)
        return super().raise_for_status()

    @classmethod
    def read_whole(cls, status: int, headers: RawHeaders, body: bytes, reason: str) -> _Answer:
        """The answer as ``httpx.Response(content=body)`` makes it (``Content-Length`` added
        when absent, the body read and the stream closed), without running an identity
        decoder and two generators over a body already whole. An encoded body (gzip, ...)
        goes through httpx's decoders."""
        extensions = _extensions(reason)
        answer = cls(status_code=status, headers=headers, stream=httpx.ByteStream(body))
        if "content-encoding" in answer.headers:
            return cls(status_code=status, headers=headers, content=body, extensions=extensions)
        answer.extensions = extensions
        if "content-length" not in answer.headers:
            answer.headers["Content-Length"] = str(len(body))
        answer._content = body
        answer.is_stream_consumed = True
        answer.is_closed = True
        return answer


def _wire_headers(
    client: httpx.Headers,
    call: httpx._types.HeaderTypes | None,
    body: dict[str, str],
    method: str,
    host: str,
    auth: tuple[str | bytes, str | bytes] | None,
) -> list[tuple[str, str]] | None:
    """The headers httpx would put on the request, in its order, names lowercased as aiohttp
    reads them from an ``httpx.Headers``: ``Host``; ``Content-Length: 0`` for a body-less
    POST, PUT or PATCH; the client's headers; the call's, each replacing the client's of that
    name and moving to the end; the body's ``Content-Length`` and ``Content-Type`` unless the
    call set them; Basic auth's ``Authorization`` in place of any other. ``None`` when the
    call's headers are not ``str`` names and values (httpx's own path encodes those)."""
    pairs = [(name.lower(), value) for name, value in client.items()]
    if call:
        given: list[tuple[object, object]]
        if isinstance(call, Mapping):
            given = list(call.items())
        elif isinstance(call, list | tuple):
            given = list(call)
        else:
            return None
        named: list[tuple[str, str]] = []
        for name, value in given:
            if not (isinstance(name, str) and isinstance(value, str)):
                return None
            named.append((name.lower(), value))
        replaced = {name for name, _ in named}
        pairs = [pair for pair in pairs if pair[0] not in replaced]
        pairs.extend(named)
    present = {name for name, _ in pairs}
    for name, value in body.items():
        key = name.lower()
        if key == "transfer-encoding" and "content-length" in present:
            continue
        if key not in present:
            pairs.append((key, value))
            present.add(key)
    first: list[tuple[str, str]] = [] if "host" in present else [("host", host)]
    if (
        "content-length" not in present
        and "transfer-encoding" not in present
        and method in ("POST", "PUT", "PATCH")
    ):
        first.append(("content-length", "0"))
    pairs = first + pairs
    if auth is not None:
        value = httpx.BasicAuth(*auth)._auth_header
        if "authorization" in present:
            at = next(i for i, pair in enumerate(pairs) if pair[0] == "authorization")
            pairs = [pair for pair in pairs if pair[0] != "authorization"]
            pairs.insert(at, ("authorization", value))
        else:
            pairs.append(("authorization", value))
    return pairs


def _joined(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """``pairs`` as aiohttp reads an ``httpx.Headers`` (its ``items()``): a repeated name's
    values joined by ", " in one line."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined


def _extensions(reason: str) -> dict[str, Any]:
    extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
    if reason:
        extensions["reason_phrase"] = reason.encode()
    return extensions


def _basic_pair(auth: object) -> bool:
    return (
        isinstance(auth, tuple)
        and len(auth) == 2
        and all(isinstance(part, str | bytes) for part in auth)
    )


class _Transport(AiohttpTransport):
    """httpx-aiohttp's transport, with two changes, and :meth:`exchange` for the client's
    short path (aiohttp's arguments in, the answer's parts out).

    - It maps every aiohttp connection error to ``httpx.ConnectTimeout`` (0.2.0), so a refused
      connection would look like a timeout: the real class is given back.
    - The answer is read whole here, with aiohttp's ``read()``, and handed to httpx as content:
      provider answers are small JSON documents, and streaming them through httpx's and the
      transport's async iterators cost 8% of the event loop's time under load. An answer over
      :data:`MAX_ANSWER_BYTES` is refused rather than held in memory.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        data: bytes | httpx.AsyncByteStream
        try:
            data = request.content
        except httpx.RequestNotRead:
            data = request.stream  # type: ignore[assignment]
            request.headers.pop("transfer-encoding", None)  # aiohttp frames the body itself
        with httpx._exceptions.request_context(request=request):
            status, headers, content, reason = await self.exchange(
                request.method,
                str(request.url),
                request.headers,
                data,
                request.extensions.get("timeout", {}),
                server_hostname=request.extensions.get("sni_hostname"),
            )
        return httpx.Response(
            status_code=status,
            headers=headers,
            content=content,
            request=request,
            extensions=_extensions(reason),
        )

    async def exchange(
        self,
        method: str,
        url: str | yarl.URL,
        headers: Mapping[str, str],
        data: bytes | httpx.AsyncByteStream | None,
        timeout: Mapping[str, float | None],  # noqa: ASYNC109 (httpx's phases, as aiohttp's)
        *,
        server_hostname: str | None = None,
    ) -> tuple[int, RawHeaders, bytes, str]:
        """One request through aiohttp: the answer's status, raw headers, whole body and reason
        phrase. Failures are httpx's exceptions, without their ``request`` (the caller's
        ``request_context``, or the short path, attaches it)."""
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        try:
            with map_aiohttp_exceptions():
                async with self.client.request(
                    method=method,
                    url=url,
                    headers=headers,
                    data=data or None,
                    allow_redirects=False,
                    auto_decompress=False,
                    compress=False,
                    timeout=aiohttp.ClientTimeout(
                        sock_connect=timeout.get("connect"),
                        sock_read=timeout.get("read"),
                        connect=timeout.get("pool"),
                    ),
                    server_hostname=server_hostname,
                ) as answer:
                    if (answer.content_length or 0) > MAX_ANSWER_BYTES:
                        raise httpx.ReadError(f"answer over {MAX_ANSWER_BYTES} bytes")
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in answer.content.iter_any():
                        size += len(chunk)
                        if size > MAX_ANSWER_BYTES:
                            raise httpx.ReadError(f"answer over {MAX_ANSWER_BYTES} bytes")
                        chunks.append(chunk)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if cause is None or isinstance(
                cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError
            ):
                raise
            raise httpx.ConnectError(str(exc) or type(cause).__name__) from cause
        return answer.status, answer.raw_headers, b"".join(chunks), answer.reason or ""

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
