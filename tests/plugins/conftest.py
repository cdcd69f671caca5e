"""Fixtures the provider plugin tests share.

Each module defines a module-scoped ``shared_fake`` (its provider's fake API, started once) and
may override ``provider_spec`` to have every request sent to ``fake`` checked against that
provider's OpenAPI document.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from pipecored.http import outbound_client
from tests.fakes.specs import validate_request


@pytest.fixture
def provider_spec() -> str | None:
    return None


@pytest.fixture
def fake(shared_fake: Any, provider_spec: str | None) -> Iterator[Any]:
    shared_fake.reset()
    yield shared_fake
    if provider_spec is not None:
        # Whatever the test made the plugin send must be a request the provider's document allows.
        for recorded in shared_fake.requests:
            validate_request(provider_spec, recorded)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture(params=[pytest.param("httpx", id="httpx"), pytest.param("aiohttp", id="aiohttp")])
async def any_client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx, and the aiohttp-backed client the daemon hands to plugins."""
    client = (
        outbound_client(max_connections=4, timeout=5)
        if request.param == "aiohttp"
        else httpx.AsyncClient(trust_env=False)
    )
    async with client:
        yield client
