"""A loopback gateway for the example third-party provider, httpjson (examples/)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.fakes.server import FakeServer, RecordedRequest


@dataclass
class HttpJsonGateway:
    """Answers ``POST /messages`` with ``{"id": "hj-N"}``; ``fail_next`` scripts failures."""

    server: FakeServer = field(init=False)
    failures: deque[Response] = field(default_factory=deque)
    delay: float = 0.0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.server = FakeServer(self._answer)

    async def _answer(self, request: RecordedRequest) -> Response:
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        if self.failures:
            return self.failures.popleft()
        return JSONResponse({"id": f"hj-{next(self._ids)}"}, status_code=201)

    def fail_next(self, status: int, *, times: int = 1, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        for _ in range(times):
            self.failures.append(
                JSONResponse({"error": f"scripted {status}"}, status_code=status, headers=headers)
            )

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.server.requests if r.path == "/messages"]

    def start(self) -> HttpJsonGateway:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()


def signed_events(secret: str, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"events": events}).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Signature": signature}
