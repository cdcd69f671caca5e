"""The HTTP clients a plugin is tested with."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal

import httpx

from pipecored.http import outbound_client

ClientKind = Literal["httpx", "aiohttp"]
CLIENT_KINDS: tuple[ClientKind, ...] = ("httpx", "aiohttp")


@contextlib.asynccontextmanager
async def http_client(kind: ClientKind) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx, or the aiohttp-backed client the daemon hands to plugins (``ctx.http``):
    a plugin should behave the same with both."""
    http = (
        outbound_client(max_connections=4, timeout=5)
        if kind == "aiohttp"
        else httpx.AsyncClient(trust_env=False)
    )
    async with http:
        yield http
