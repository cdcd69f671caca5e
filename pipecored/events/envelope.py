"""One event as its endpoint receives it: the JSON body and the Standard Webhooks headers.

The body is built once, when the event is stored, and posted byte for byte on every attempt: the
signature covers those bytes, and a receiver that dedupes by ``webhook-id`` must see the same
event each time. Only the timestamp and the signature are new on a retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from pipecored.signing import webhook_headers, webhook_signing_key


def event_body(event_type: str, occurred_at: float, data: Mapping[str, Any]) -> bytes:
    """``{"type", "timestamp" (ISO 8601, UTC), "data"}`` as UTF-8 JSON, text kept as written
    (no ``\\u`` escapes: tenants write Spanish and emoji)."""
    timestamp = datetime.fromtimestamp(occurred_at, UTC).isoformat().replace("+00:00", "Z")
    document = {"type": event_type, "timestamp": timestamp, "data": dict(data)}
    # orjson: compact UTF-8 with text as written, as json.dumps(ensure_ascii=False) would give,
    # in a fraction of the time (this runs inside the store's write transaction)
    return orjson.dumps(document)


def signed_headers(
    event_id: str, body: bytes, secret: str, *, now: float | None = None
) -> dict[str, str]:
    """The headers of one attempt at posting ``body``: ``webhook-id`` is the event's id (the same
    on every retry), signed with the endpoint's ``secret`` at ``now``.

    Raises ``ValueError`` (without the secret in it) for a secret that is no usable key.
    """
    headers = webhook_headers(event_id, body, key=webhook_signing_key(secret), timestamp=now)
    headers["content-type"] = "application/json"
    return headers
