"""Fixtures the provider plugin tests share.

Each module defines a module-scoped ``shared_fake`` (its provider's fake API, started once); the
fake checks every request against the provider's OpenAPI document as it arrives, and ``fake``
raises what it refused in the test that sent it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from pipecored.testing import CLIENT_KINDS, http_client


@pytest.fixture
def fake(shared_fake: Any) -> Iterator[Any]:
    shared_fake.reset()
    yield shared_fake
    shared_fake.raise_violations()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture(params=CLIENT_KINDS)
async def any_client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx, and the aiohttp-backed client the daemon hands to plugins."""
    async with http_client(request.param) as client:
        yield client
