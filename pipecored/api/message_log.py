"""GET /messaging/logs/{tenant} and GET /messaging/stats/{tenant}."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from starlette.requests import Request

from pipecored.api.context import authenticated
from pipecored.api.responses import JSONResponse
from pipecored.api.serializers import log_item, stats_view
from pipecored.errors import ValidationFailed
from pipecored.store.base import DIRECTIONS, MESSAGE_STATUSES, LogFilter

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def _whole_number(raw: str, *, max_digits: int) -> int | None:
    """ASCII digits only, and few enough of them: ``str.isdigit`` takes "١٢" and "²", and
    ``int()`` refuses over 4,300 digits (a 500) while SQLite refuses over 2**63 (a 503)."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > max_digits:
        return None
    return int(raw)


def decode_cursor(cursor: str, *, field: str = "cursor") -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        seq = _whole_number(raw[1:], max_digits=18) if raw.startswith("s") else None
        if seq is not None:
            return seq
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ValidationFailed(f"{field}: not a cursor this API returned", field=field)


def _choice(request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query_params.get(name)
    if value is not None and value not in allowed:
        raise ValidationFailed(f"{name}: must be one of {', '.join(allowed)}", field=name)
    return value


def page_limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    limit = _whole_number(raw, max_digits=len(str(MAX_LIMIT)))
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit: a whole number from 1 to {MAX_LIMIT}", field="limit")
    return limit


async def get_logs(request: Request) -> JSONResponse:
    caller = authenticated(request)
    service = caller.service
    cursor = request.query_params.get("cursor")
    where = LogFilter(
        before_seq=decode_cursor(cursor) if cursor else None,
        channel=_choice(request, "channel", service.channels.names),
        status=_choice(request, "status", MESSAGE_STATUSES),
        direction=_choice(request, "direction", DIRECTIONS),
    )
    page = await service.logs(
        caller.principal, request.path_params["tenant_id"], limit=page_limit(request), where=where
    )
    next_cursor = encode_cursor(page.next_seq) if page.next_seq is not None else None
    return JSONResponse({"items": [log_item(r) for r in page.items], "nextCursor": next_cursor})


def _since(request: Request) -> float | None:
    raw = request.query_params.get("since")
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed("since: expected an ISO 8601 date or time", field="since") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


async def get_stats(request: Request) -> JSONResponse:
    caller = authenticated(request)
    tenant_id = request.path_params["tenant_id"]
    stats = await caller.service.stats(caller.principal, tenant_id, since=_since(request))
    return JSONResponse(stats_view(tenant_id, stats))
