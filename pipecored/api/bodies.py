"""Reading request bodies: the size limit while reading, JSON only (decoded by orjson), the
tenant id taken out. What a body must contain is the service's to check."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from pipecored.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

MAX_JSON_DEPTH = 32


async def read_body(request: Request, *, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"body over {limit} bytes")
        except ValueError:
            raise BadRequest("invalid Content-Length", code="bad_request") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


async def read_json(request: Request, *, limit: int) -> Any:
    """The body as JSON. orjson refuses what is not JSON or not text: NaN and Infinity,
    ``1e999``, invalid UTF-8 and lone UTF-16 surrogates (``"\\ud800"``), which would otherwise
    pass validation and fail later in the store or the idempotency digest."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("send the body as Content-Type: application/json")
    raw = await read_body(request, limit=limit)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # past orjson's own depth limit (1,024) too: the text is not read far enough to tell
        raise BadRequest("the body is not valid UTF-8 JSON") from None
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", code="json_too_deep")
    return data


def json_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed("body: expected a JSON object", field="body")
    return data


async def read_json_object(request: Request, *, limit: int) -> dict[str, Any]:
    return json_object(await read_json(request, limit=limit))


def take_tenant_id(body: dict[str, Any]) -> str | None:
    """Pop ``tenant_id`` / ``tenantId`` (aliases of each other) from a body."""
    snake = body.pop("tenant_id", None)
    camel = body.pop("tenantId", None)
    if snake is not None and camel is not None and snake != camel:
        raise ValidationFailed("tenant_id: differs from tenantId", field="tenant_id")
    value = snake if snake is not None else camel
    if value is not None and (not isinstance(value, str) or not value):
        raise ValidationFailed("tenant_id: expected a non-empty string", field="tenant_id")
    return value
