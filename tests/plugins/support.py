"""Plain helpers the provider plugin tests share."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx

from pipecored import SendContext


def send_context(
    http: httpx.AsyncClient,
    base_url: str,
    *,
    tenant_id: str,
    channel: str,
    credentials: Mapping[str, str],
    timeout: float = 5.0,
    **extra: Any,
) -> SendContext:
    return SendContext(
        tenant_id=tenant_id,
        channel=channel,
        credentials=credentials,
        base_url=base_url,
        http=http,
        timeout=timeout,
        **extra,
    )


def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def http_date(offset: float) -> str:
    """An HTTP date ``offset`` seconds from now."""
    return format_datetime(datetime.fromtimestamp(time.time() + offset, tz=UTC), usegmt=True)
