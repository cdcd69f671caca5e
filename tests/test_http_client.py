"""The outbound client's short path sends what httpx's own path sends, byte for byte, and
answers and fails the same way: a real loopback server records both."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from pipecored.http import _Answer, outbound_client


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": list(request.raw_headers),
                "body": await request.read(),
            }
        )
        if request.path == "/missing":
            return web.json_response({"error": "no such thing"}, status=404)
        if request.path == "/gzip":
            body = gzip.compress(json.dumps({"id": "p-1", "text": "ñandú 🙏"}).encode())
            return web.Response(
                body=body,
                status=201,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        if request.path == "/chunked":  # no Content-Length: the body's end is the last chunk
            answer = web.StreamResponse(status=201, headers={"Content-Type": "application/json"})
            answer.enable_chunked_encoding()
            await answer.prepare(request)
            await answer.write(b'{"id": "p-1", ')
            await answer.write('"text": "ñandú 🙏"}'.encode())
            await answer.write_eof()
            return answer
        return web.json_response({"id": "p-1", "text": "ñandú 🙏"}, status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


CALLS: list[dict[str, Any]] = [
    {"json": {"to": ["+34600111222"], "body": "¿Mañana a las 21:30? 🙏"}},
    {"content": b'{"raw": true}', "headers": {"Content-Type": "application/json"}},
    {"data": {"To": "+34600111222", "Body": "hola", "MediaUrl": ["a", "b"]}},
    {"json": {"x": 1}, "auth": ("AC123", "s3cr3t-token"), "headers": {"X-Trace": "1"}},
    {"headers": {"Authorization": "Bearer k", "User-Agent": "plugin/2"}},
    # a repeated name (sent joined in one line), given as pairs
    {"json": {"a": 1}, "headers": [("X-Dup", "1"), ("x-dup", "2")]},
    # the call's Content-Type and Content-Length win over the body's
    {"json": {"a": 1}, "headers": {"content-type": "application/vnd.api+json"}},
    {"content": b'{"raw": true}', "headers": {"Content-Length": "13"}},
    # text content is sent UTF-8
    {"content": "¿texto? ñandú 🙏"},
    # Basic auth takes the place of the call's own Authorization
    {"auth": ("u", "p"), "headers": {"authorization": "Bearer x", "X-After": "1"}},
    {"headers": {"Host": "provider.example"}},
    {"method": "GET"},
    {"method": "put"},
    {"method": "DELETE", "headers": {"X-Trace": "2"}},
    {"method": "PATCH", "data": {"k": "v"}},
]


@pytest.mark.parametrize("call", CALLS)
async def test_same_request_on_the_wire_as_httpx(
    recorder: tuple[str, list[dict[str, Any]]], call: dict[str, Any]
) -> None:
    base, seen = recorder
    call = dict(call)
    method = call.pop("method", "POST")
    client = outbound_client(max_connections=4, timeout=5)
    try:
        short = await client.request(method, f"{base}/messages", **call)
        # params={} sends the same URL through httpx's own path
        full = await client.request(method, f"{base}/messages", params={}, **call)
    finally:
        await client.aclose()
    assert isinstance(short, _Answer) and not isinstance(full, _Answer)  # the short path taken
    assert len(seen) == 2
    assert seen[0] == seen[1]
    for response in (short, full):
        assert response.status_code == 201
        assert response.json() == {"id": "p-1", "text": "ñandú 🙏"}
        assert response.request.method == method.upper()
        assert str(response.request.url) == f"{base}/messages"
        assert str(response.url) == f"{base}/messages"
        assert response.request.content == full.request.content
    assert short.elapsed.total_seconds() >= 0
    assert short.headers == full.headers
    assert short.request.headers == full.request.headers


@pytest.mark.parametrize("path", ["/messages", "/gzip", "/chunked"])
async def test_same_answer_as_httpx(recorder: tuple[str, list[dict[str, Any]]], path: str) -> None:
    base, _ = recorder
    client = outbound_client(max_connections=4, timeout=5)
    try:
        short = await client.post(f"{base}{path}", json={"to": "+34600111222"})
        full = await client.post(f"{base}{path}", json={"to": "+34600111222"}, params={})
    finally:
        await client.aclose()
    assert isinstance(short, _Answer) and not isinstance(full, _Answer)
    assert short.json() == {"id": "p-1", "text": "ñandú 🙏"}
    for read in (
        lambda r: r.status_code,
        lambda r: r.reason_phrase,
        lambda r: r.http_version,
        lambda r: r.headers.multi_items(),
        lambda r: r.content,
        lambda r: r.text,
        lambda r: r.encoding,
        lambda r: (r.is_closed, r.is_stream_consumed, r.num_bytes_downloaded),
        lambda r: r.json(),
    ):
        assert read(short) == read(full)


async def test_error_answer_raises_with_its_request(
    recorder: tuple[str, list[dict[str, Any]]],
) -> None:
    base, _ = recorder
    client = outbound_client(max_connections=4, timeout=5)
    try:
        answer = await client.post(f"{base}/missing", json={"to": "+34600111222"})
    finally:
        await client.aclose()
    assert isinstance(answer, _Answer)
    with pytest.raises(httpx.HTTPStatusError) as raised:
        answer.raise_for_status()
    assert raised.value.response.status_code == 404
    assert str(raised.value.request.url) == f"{base}/missing"
    assert raised.value.request.headers["content-type"] == "application/json"


async def test_a_malformed_url_fails_as_httpx_does() -> None:
    client = outbound_client(max_connections=4, timeout=5)
    try:
        with pytest.raises(httpx.InvalidURL):
            await client.post("http://[::1/messages", json={})
        with pytest.raises(httpx.InvalidURL):
            await client.post("http://[::1/messages", json={}, params={})
    finally:
        await client.aclose()


async def test_refused_connection_fails_as_httpx_does() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = outbound_client(max_connections=4, timeout=5)
    try:
        with pytest.raises(httpx.ConnectError) as short:
            await client.post(f"http://127.0.0.1:{port}/messages", json={})
        with pytest.raises(httpx.ConnectError) as full:
            await client.post(f"http://127.0.0.1:{port}/messages", json={}, params={})
    finally:
        await client.aclose()
    assert short.value.request.url == full.value.request.url


async def test_closed_client_refuses_like_httpx(
    recorder: tuple[str, list[dict[str, Any]]],
) -> None:
    base, seen = recorder
    client = outbound_client(max_connections=4, timeout=5)
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.post(f"{base}/messages", json={})
    assert seen == []
