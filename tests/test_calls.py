"""The helpers provider plugins share: bounded calls, Retry-After, scrubbing, sender domains."""

from __future__ import annotations

import contextlib
import email.utils
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from aiohttp import web
from starlette.responses import Response

import pipecored.http
from pipecored import (
    MessageRejected,
    ProviderError,
    ProviderTimeout,
    call_provider,
    check_sender_domain,
    parse_mailbox,
    parse_retry_after,
    request_provider,
    scrub_secrets,
)
from pipecored.http import outbound_client
from pipecored.testing import FakeServer
from tests.conftest import free_port
from tests.fakes.httpjson import HttpJsonGateway


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("120", 120.0, id="seconds"),
        pytest.param(" 1.5 ", 1.5, id="fractional"),
        pytest.param(email.utils.formatdate(1030, usegmt=True), 30.0, id="http-date"),
        pytest.param(email.utils.formatdate(900, usegmt=True), 0.0, id="date-in-the-past"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
        pytest.param("nan", None, id="not-finite"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=1000.0) == expected


def test_scrub_secrets_masks_echoed_credentials_and_cuts_long_text() -> None:
    text = "bad token tok_secret_123 for account AC1 " + "x" * 600
    scrubbed = scrub_secrets(text, ["tok_secret_123", "AC1"])
    assert "tok_secret_123" not in scrubbed
    assert "AC1" in scrubbed  # too short to mask without mangling ordinary text
    assert len(scrubbed) == 500


@pytest.mark.parametrize(
    "client", [pytest.param("httpx", id="httpx"), pytest.param("daemon", id="daemon-client")]
)
async def test_call_provider_maps_transport_failures(client: str) -> None:
    http = (
        httpx.AsyncClient() if client == "httpx" else outbound_client(max_connections=4, timeout=5)
    )
    fake = HttpJsonGateway().start()
    message = {"id": "m1", "channel": "sms", "to": ["+34600111222"], "from": None, "body": "hola"}
    try:
        release = fake.hold_next()
        with pytest.raises(ProviderTimeout):
            await call_provider(
                http.post(f"{fake.url}/messages", json=message), provider="httpjson", timeout=0.2
            )
        release.set()
        await fake.wait_for_answers(1)
        with pytest.raises(ProviderError) as refused:
            await call_provider(
                http.post(f"http://127.0.0.1:{free_port()}/messages", json={}),
                provider="httpjson",
                timeout=2,
            )
        assert refused.value.code == "connection_error"
        assert refused.value.retryable
        assert not isinstance(refused.value, ProviderTimeout)
    finally:
        fake.stop()
        await http.aclose()


@pytest.mark.parametrize(
    ("sender", "allowed"),
    [
        pytest.param("reservas@tableflow.com", True, id="same-domain"),
        pytest.param("Mesa Ñandú <mesa@TableFlow.com>", True, id="display-name-any-case"),
        pytest.param("x@evil.com", False, id="other-domain"),
        pytest.param("x@mail.tableflow.com", False, id="subdomain"),
        pytest.param("a@tableflow.com, b@evil.com", False, id="list"),
        pytest.param("evil@x.com <a@tableflow.com>\r\nBcc: z@y.com", False, id="header-injection"),
    ],
)
def test_check_sender_domain(sender: str, allowed: bool) -> None:
    if allowed:
        check_sender_domain(sender, "noreply@tableflow.com")
    else:
        with pytest.raises(MessageRejected) as rejected:
            check_sender_domain(sender, "noreply@tableflow.com")
        assert rejected.value.field == "from"


def test_parse_mailbox() -> None:
    assert parse_mailbox("Ana <ana@example.com>") == ("Ana", "ana@example.com")
    assert parse_mailbox("not an address") is None


@contextlib.asynccontextmanager
async def provider_answering(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """A loopback server answering ``POST /messages`` with ``handler``, and the daemon's
    outbound client to call it with."""
    app = web.Application()
    app.router.add_post("/messages", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    http = outbound_client(max_connections=4, timeout=5)
    try:
        yield f"http://127.0.0.1:{port}/messages", http
    finally:
        await http.aclose()
        await runner.cleanup()


async def test_the_outbound_client_keeps_no_cookies() -> None:
    # One client serves every tenant: a cookie one tenant's provider sets must not ride on the
    # next tenant's call to the same host.
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"id": "x"}, status=201)
        response.set_cookie("affinity", "tenant-a-session", path="/")
        return response

    async with provider_answering(handler) as (url, http):
        for _ in range(3):
            response = await http.post(url, json={})
            assert response.status_code == 201
        http.cookies.set("injected", "by-a-plugin")
        await http.post(url, json={})
        assert seen == [None, None, None, None]
        assert not http.cookies


async def test_an_oversized_answer_is_refused_not_held(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipecored.http, "MAX_ANSWER_BYTES", 1024)

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)  # chunked: no Content-Length to judge by
        await response.prepare(request)
        for _ in range(8):
            await response.write(b"x" * 512)
        await response.write_eof()
        return response

    async with provider_answering(handler) as (url, http):
        with pytest.raises(httpx.ReadError, match="over 1024 bytes"):
            await http.post(url, content=b"")


async def test_a_compressed_answer_reaches_the_plugin_decoded() -> None:
    # The transport reads answers whole and hands httpx the raw bytes: httpx still decodes them.
    async def handler(request: web.Request) -> web.StreamResponse:
        body = gzip.compress('{"id": "SMñ1"}'.encode())
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    async with provider_answering(handler) as (url, http):
        response = await http.post(url, json={})
        assert response.json() == {"id": "SMñ1"}


def _answering(status: int, body: bytes = b"{}") -> FakeServer:
    return FakeServer(lambda request: Response(body, status_code=status)).start()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(None, f"pipecored/{pipecored.__version__}", id="pipecoreds-own"),
        pytest.param({"user-agent": "acme/2.0"}, "acme/2.0", id="the-plugins-any-case"),
    ],
)
async def test_request_provider_sends_one_user_agent(
    headers: dict[str, str] | None, expected: str
) -> None:
    fake = _answering(201)
    try:
        async with httpx.AsyncClient() as http:
            await request_provider(
                http, "POST", f"{fake.url}/x", provider="acme", timeout=5, headers=headers
            )
    finally:
        fake.stop()
    [request] = fake.requests
    assert request.headers["user-agent"] == expected


async def test_request_provider_raises_the_plugins_reading_of_an_error() -> None:
    fake = _answering(429, b'{"error": "slow down, tok_secret_123"}')
    read: list[tuple[int, list[str]]] = []

    def classify(response: httpx.Response, secrets: list[str]) -> ProviderError:
        read.append((response.status_code, secrets))
        return ProviderError(scrub_secrets(response.text, secrets), retryable=True, code="slow")

    try:
        async with httpx.AsyncClient() as http:
            with pytest.raises(ProviderError) as caught:
                await request_provider(
                    http,
                    "POST",
                    f"{fake.url}/x",
                    provider="acme",
                    timeout=5,
                    secrets=iter(["tok_secret_123"]),  # any iterable, read once
                    classify=classify,
                    json={"to": "+34600111222"},
                )
            unclassified = await request_provider(
                http, "GET", f"{fake.url}/x", provider="acme", timeout=5
            )
    finally:
        fake.stop()
    assert read == [(429, ["tok_secret_123"])]
    assert caught.value.code == "slow"
    assert "tok_secret_123" not in caught.value.message
    assert unclassified.status_code == 429
    assert fake.requests[0].json() == {"to": "+34600111222"}


async def test_request_provider_maps_transport_failures() -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(ProviderError) as refused:
            await request_provider(
                http,
                "POST",
                f"http://127.0.0.1:{free_port()}/x",
                provider="acme",
                timeout=2,
                secrets=["tok_secret_123"],
            )
    assert (refused.value.code, refused.value.retryable) == ("connection_error", True)
