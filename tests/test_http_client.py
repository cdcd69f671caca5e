"""The outbound client's short path sends what httpx's own path sends, byte for byte, and
answers and fails the same way: a real loopback server records both."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from pipecored.http import outbound_client


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
]


@pytest.mark.parametrize("call", CALLS)
async def test_same_request_on_the_wire_as_httpx(
    recorder: tuple[str, list[dict[str, Any]]], call: dict[str, Any]
) -> None:
    base, seen = recorder
    client = outbound_client(max_connections=4, timeout=5)
    try:
        short = await client.request("POST", f"{base}/messages", **call)
        # params={} sends the same URL through httpx's own path
        full = await client.request("POST", f"{base}/messages", params={}, **call)
    finally:
        await client.aclose()
    assert len(seen) == 2
    assert seen[0] == seen[1]
    for response in (short, full):
        assert response.status_code == 201
        assert response.json() == {"id": "p-1", "text": "ñandú 🙏"}
        assert response.request.method == "POST"
        assert str(response.request.url) == f"{base}/messages"
    assert short.elapsed.total_seconds() >= 0
    assert short.headers == full.headers
    assert short.request.headers == full.request.headers


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
