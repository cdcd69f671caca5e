"""A provider fake whose next answers a test can script, on a :class:`FakeServer`.

Write a fake of your provider by subclassing :class:`ScriptedFake`: pass the check its requests
must pass, and answer a request as the provider would in :meth:`ScriptedFake.default_answer`::

    class FakeGateway(ScriptedFake):
        def __init__(self) -> None:
            super().__init__(check=OpenAPICheck(Path("gateway-openapi.yaml")))

        def default_answer(self, request: RecordedRequest) -> Response:
            return JSONResponse({"id": f"msg-{len(self.requests)}"}, status_code=201)

Tests then script what comes next: :meth:`~ScriptedFake.respond_next` (an error, a 2xx without an
id), :meth:`~ScriptedFake.hold_next` (a provider slower than the plugin's timeout),
:meth:`~ScriptedFake.delay_next`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self

from starlette.responses import Response

from pipecored.testing.server import FakeServer, RecordedRequest, RequestCheck
from pipecored.testing.violations import RequestViolation

# A held answer is given after this long even if the test never releases it, so that a broken
# test cannot hang the server's shutdown.
_MAX_HOLD = 30.0


@dataclass(frozen=True)
class Reply:
    """The answer to the next request. ``status=None`` answers as the fake usually does, after
    ``delay`` seconds or, with ``hold``, once the test sets that event."""

    status: int | None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str | None = "application/json"
    hold: threading.Event | None = None

    def response(self) -> Response:
        assert self.status is not None
        return Response(
            self.body,
            status_code=self.status,
            headers=dict(self.headers),
            media_type=self.content_type,
        )


class ScriptedFake:
    """A recording, checking provider fake that answers from its script first, then with
    :meth:`default_answer`. Start and stop it (or use ``with``). ``delay`` holds back every
    unscripted answer."""

    def __init__(self, *, check: RequestCheck | None = None) -> None:
        self.delay = 0.0
        self.server = FakeServer(self._answer, check=check)
        self._script: deque[Reply] = deque()
        self._holds: list[threading.Event] = []

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.server.requests

    @property
    def violations(self) -> list[RequestViolation]:
        return self.server.violations

    def raise_violations(self) -> None:
        """Raise the requests the check refused, and forget them (see :class:`FakeServer`)."""
        self.server.raise_violations()

    async def wait_for_answers(self, count: int, *, within: float = 10.0) -> None:
        """Wait until the fake has given ``count`` answers since it started or was reset."""
        await self.server.wait_for_answers(count, within=within)

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self._release_holds()
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget what arrived and what was scripted, for a fake shared between tests. Requests
        the check refused are kept until raised."""
        self.delay = 0.0
        self._release_holds()
        self._script.clear()
        self.server.requests.clear()
        self.server.answered = 0

    def script_next(self, reply: Reply, *, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``reply``."""
        for _ in range(times):
            self._script.append(reply)

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
        self.script_next(Reply(status, data, dict(headers or {}), delay, content_type=None))

    def delay_next(self, seconds: float) -> None:
        """Answer the next request as usual, but only after ``seconds``."""
        self.script_next(Reply(None, delay=seconds))

    def hold_next(self) -> threading.Event:
        """Hold the answer to the next request (as usual otherwise) until the test sets the
        returned event: a provider slower than any timeout, without guessing how slow."""
        hold = threading.Event()
        self._holds.append(hold)
        self.script_next(Reply(None, hold=hold))
        return hold

    def _release_holds(self) -> None:
        for hold in self._holds:
            hold.set()
        self._holds.clear()

    async def _answer(self, request: RecordedRequest) -> Response:
        reply = self._script.popleft() if self._script else Reply(None, delay=self.delay)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.hold is not None:
            await asyncio.to_thread(reply.hold.wait, _MAX_HOLD)
        if reply.status is None:
            return self.default_answer(request)
        return reply.response()

    def default_answer(self, request: RecordedRequest) -> Response:
        """The provider's own answer to ``request`` (a subclass writes it)."""
        raise NotImplementedError
