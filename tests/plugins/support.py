"""Plain helpers the provider plugin tests share."""

from __future__ import annotations

from collections.abc import Mapping
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
