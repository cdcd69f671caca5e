"""The error a fake raises for a request its provider would refuse."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipecored.testing.server import RecordedRequest

_BODY_EXCERPT = 300


class RequestViolation(AssertionError):
    """A request that does not conform to the provider's document (an ``AssertionError``, so
    that pytest reports it as a failed check). ``reason`` says what is wrong; the original
    validation error, when there is one, is the ``__cause__``."""

    def __init__(self, reason: str, request: RecordedRequest | None = None) -> None:
        self.reason = reason
        self.request = request
        where = f"{request.method} {request.path}: " if request is not None else ""
        text = f"{where}{reason}"
        if request is not None and request.body:
            excerpt = request.body[:_BODY_EXCERPT].decode("utf-8", errors="replace")
            text += f"\n  body: {excerpt}{'…' if len(request.body) > _BODY_EXCERPT else ''}"
        super().__init__(text)

    @classmethod
    def combined(cls, violations: Sequence[RequestViolation]) -> RequestViolation:
        text = f"{len(violations)} requests did not conform:\n" + "\n".join(
            str(v) for v in violations
        )
        combined = cls(text)
        combined.__cause__ = violations[0]
        return combined
