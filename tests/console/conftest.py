"""The console in process: the whole app (real SQLite file, real delivery worker, the fake
provider gateway) behind httpx, and a logged-in client per key."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from pipecored.api.app import create_app
from pipecored.gateway import Gateway
from pipecored.plugins import LoadedProviders
from tests.conftest import ConfigDir, default_daemon_settings

BASE = "http://pipecored.test"
ORIGIN = {"Origin": BASE}
ACME_KEY = "acme-key-0123456789"
GLOBEX_KEY = "globex-key-0123456789"
DEMO_KEY = "demo-key-0123456789"
FAILED_KEY_BURST = 3


def console_settings(tmp_path: Path, **server: Any) -> dict[str, Any]:
    settings = default_daemon_settings(tmp_path / "pipecored.db")
    settings["auth"]["failedKeyLimit"] = {"perSecond": 0.001, "burst": FAILED_KEY_BURST}
    if server:
        settings["server"] = server
    return settings


@pytest.fixture
async def console_app(
    config_dir: ConfigDir, providers: LoadedProviders, tmp_path: Path
) -> AsyncIterator[tuple[Callable[[], httpx.AsyncClient], Gateway]]:
    """The app, and a function giving a new client (its own cookies) for it."""
    config_dir.write_daemon(console_settings(tmp_path))
    gateway = Gateway(config_dir.path, providers, metrics_registry=CollectorRegistry(), watch=False)
    gateway.load()
    app = create_app(gateway)
    await gateway.start()
    clients: list[httpx.AsyncClient] = []

    def client() -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        c = httpx.AsyncClient(transport=transport, base_url=BASE)
        clients.append(c)
        return c

    try:
        yield client, gateway
    finally:
        for c in clients:
            await c.aclose()
        await gateway.stop()


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def log_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/console/login", data={"key": key}, headers=ORIGIN)


LoggedIn = Callable[[str], Awaitable[httpx.AsyncClient]]


@pytest.fixture
def logged_in(
    console_app: tuple[Callable[[], httpx.AsyncClient], Gateway],
) -> LoggedIn:
    make, _ = console_app

    async def as_key(key: str) -> httpx.AsyncClient:
        client = make()
        r = await log_in(client, key)
        assert r.status_code == 303, r.text
        return client

    return as_key
