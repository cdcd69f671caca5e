"""A recording HTTP server on 127.0.0.1, run in a background thread, that checks every request it
receives the moment it arrives.

A provider fake is a handler (``RecordedRequest -> Response``) on a :class:`FakeServer`. With a
``check`` (see :mod:`pipecored.testing.checks`), a request the provider's document does not allow
is answered ``400`` at once and kept in ``violations``; :meth:`FakeServer.raise_violations` (called
by :meth:`FakeServer.stop`, and by the fixtures of :class:`pipecored.testing.ProviderContract`)
raises it in the test that made the plugin send it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipecored.testing.violations import RequestViolation

Handler = Callable[["RecordedRequest"], Response | Awaitable[Response]]
RequestCheck = Callable[["RecordedRequest"], None]
"""Raises :class:`RequestViolation` for a request the provider would refuse."""

_START_DEADLINE = 10.0


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    url: str

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class FakeServer:
    """A recording HTTP server.

    ``handler`` answers every request (any path, any method); tests may swap it to script answers.
    ``requests`` lists what arrived, ``answered`` counts the answers given (a held or delayed
    answer counts once it is given), ``violations`` the requests ``check`` refused.
    """

    handler: Handler
    check: RequestCheck | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    violations: list[RequestViolation] = field(default_factory=list)
    answered: int = 0
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _endpoint(self, request: Request) -> Response:
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=list(request.query_params.multi_items()),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
            url=str(request.url),
        )
        self.requests.append(recorded)
        try:
            refused = self._checked(recorded)
            if refused is not None:
                return refused
            result = self.handler(recorded)
            if inspect.isawaitable(result):
                result = await result
            assert isinstance(result, Response), f"the fake's handler returned {result!r}"
            return result
        finally:
            self.answered += 1

    def _checked(self, recorded: RecordedRequest) -> Response | None:
        if self.check is None:
            return None
        try:
            self.check(recorded)
        except RequestViolation as violation:
            self.violations.append(violation)
            # Shaped so that most plugins put the reason in their ProviderError's message.
            text = f"pipecored.testing refused the request: {violation.reason}"
            return JSONResponse({"message": text, "error": text}, status_code=400)
        return None

    def raise_violations(self) -> None:
        """Raise the requests ``check`` refused (all of them, in one error), and forget them."""
        if not self.violations:
            return
        found, self.violations = self.violations, []
        if len(found) == 1:
            raise found[0]
        raise RequestViolation.combined(found)

    async def wait_for_answers(self, count: int, *, within: float = 10.0) -> None:
        """Wait until ``count`` answers have been given: a test whose client gave up on a slow
        answer waits for it here, so that it cannot land in the next test."""
        deadline = time.monotonic() + within
        while self.answered < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the fake gave {self.answered} answers, not {count}")
            await asyncio.sleep(0.01)

    def start(self) -> FakeServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self._endpoint,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                )
            ]
        )
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_DEADLINE
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving, then raise what ``check`` refused and no test has raised yet."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.raise_violations()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
