"""A loopback gateway for the example third-party provider, httpjson (examples/).

Every request is checked on arrival against the gateway's own schema, the one the example's own
tests use (``examples/pipecored-httpjson/tests/messages.schema.json``): strict, so a field the
plugin should not send fails the test that made it send it.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections import deque
from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse, Response

from pipecored.testing import JsonSchemaCheck, RecordedRequest, Reply, ScriptedFake

SCHEMA = (
    Path(__file__).resolve().parents[2]
    / "examples"
    / "pipecored-httpjson"
    / "tests"
    / "messages.schema.json"
)


def messages_check() -> JsonSchemaCheck:
    return JsonSchemaCheck({("POST", "/messages"): json.loads(SCHEMA.read_text(encoding="utf-8"))})


class HttpJsonGateway(ScriptedFake):
    """Answers ``POST /messages`` with ``201 {"id": "hj-N"}``; ``fail_next`` scripts failures,
    ``delay`` holds back every unscripted answer."""

    def __init__(self) -> None:
        super().__init__(check=messages_check())
        self._ids = itertools.count(1)

    def default_answer(self, request: RecordedRequest) -> Response:
        return JSONResponse({"id": f"hj-{next(self._ids)}"}, status_code=201)

    def fail_next(self, status: int, *, times: int = 1, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        body = json.dumps({"error": f"scripted {status}"}).encode()
        self.script_next(Reply(status, body, headers), times=times)

    @property
    def failures(self) -> deque[Reply]:
        """The scripted answers still to come (``failures.clear()`` lets the gateway recover)."""
        return self._script

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.server.requests if r.path == "/messages"]


def signed_events(secret: str, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"events": events}).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Signature": signature}
