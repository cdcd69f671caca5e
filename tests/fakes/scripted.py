"""A fake provider API on a :class:`FakeServer` whose next answers a test can script."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Self
from urllib.parse import parse_qsl, urlsplit

from starlette.responses import Response

from pipecored import WebhookRequest
from tests.fakes.server import FakeServer, RecordedRequest


@dataclass(frozen=True)
class Reply:
    """The answer to the next request; ``status=None`` answers as usual, after ``delay``."""

    status: int | None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str | None = "application/json"

    def response(self) -> Response:
        assert self.status is not None
        return Response(
            self.body,
            status_code=self.status,
            headers=dict(self.headers),
            media_type=self.content_type,
        )


class ScriptedFake:
    """Start/stop (or ``with``) a recording server that answers from ``_script`` first, then with
    ``_default``. ``delay`` holds back every unscripted answer, to provoke client timeouts."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.server = FakeServer(self._answer)
        self._script: deque[Reply] = deque()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.server.requests

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget what arrived and what was scripted, for a server shared between tests."""
        self.delay = 0.0
        self._script.clear()
        self.server.requests.clear()

    def delay_next(self, seconds: float) -> None:
        """Answer the next request as usual, but only after ``seconds``."""
        self._script.append(Reply(None, delay=seconds))

    def respond_next(
        self,
        status: int,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        *,
        delay: float = 0.0,
    ) -> None:
        """Answer the next request with exactly this status, body and headers."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        self._script.append(Reply(status, data, dict(headers or {}), delay, content_type=None))

    def _script_times(self, reply: Reply, times: int) -> None:
        for _ in range(times):
            self._script.append(reply)

    async def _answer(self, request: RecordedRequest) -> Response:
        reply = self._script.popleft() if self._script else Reply(None, delay=self.delay)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status is None:
            return self._default(request)
        return reply.response()

    def _default(self, request: RecordedRequest) -> Response:
        raise NotImplementedError


@dataclass(frozen=True)
class SignedWebhook:
    """A callback as a provider would make it: send ``body`` with ``headers`` to ``url``."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""

    def webhook_request(self, *, received_at: datetime | None = None) -> WebhookRequest:
        return WebhookRequest(
            method=self.method,
            url=self.url,
            headers={k.lower(): v for k, v in self.headers.items()},
            query=parse_qsl(urlsplit(self.url).query, keep_blank_values=True),
            body=self.body,
            received_at=received_at or datetime.now(UTC),
        )
