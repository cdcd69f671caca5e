"""What a failed provider call means for a message, as pure functions.

Every decision delivery makes after a call lives here, table-tested in ``tests/test_policy.py``:

- :func:`classify`: an exception from ``Provider.send`` becomes a :class:`Failure` (outcome,
  code, message, Retry-After, whether the provider is unavailable to this tenant); the
  provider's code and message as every store can keep them.
- :func:`after_failure`: retry on this route later, move to the next route now, or fail.
  A permanent error fails the message at once. A retryable one never does: each route gets
  ``maxAttempts`` attempts, then the next route is tried; after the last route the message starts
  again at the first, with the backoff still growing up to ``retryBackoff.max``, until a
  provider takes it or ``maxAge`` passes (the dispatch loop fails it ``expired`` then).
- :func:`backoff_delay`: exponential backoff with full jitter; the provider's Retry-After wins
  when longer.
- :func:`counts_against_circuit`: which failures say the provider is unhealthy.

No I/O and no clock: callers pass what the decision needs and apply the result.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from pipecored.errors import ProviderError
from pipecored.provider import storable_text
from pipecored.store.base import AttemptOutcomeName

Rng = Callable[[float, float], float]


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed provider call, as delivery sees it."""

    outcome: AttemptOutcomeName
    code: str
    message: str
    http_status: int | None = None
    retry_after: float | None = None
    # the provider cannot serve this tenant now whatever the message (revoked credentials)
    unavailable: bool = False

    @property
    def retryable(self) -> bool:
        return self.outcome != "permanent_error"


def classify(exc: BaseException) -> Failure:
    """What an exception escaping ``Provider.send`` means."""
    if isinstance(exc, ProviderError):
        outcome: AttemptOutcomeName = "permanent_error"
        if exc.code == "timeout":
            outcome = "timeout"
        elif exc.retryable:
            outcome = "retryable_error"
        code = exc.code or ("provider_error" if exc.retryable else "rejected")
        # the provider's own code and words: recorded, so kept as every store can keep them
        return Failure(
            outcome,
            storable_text(code),
            storable_text(exc.message),
            exc.http_status,
            exc.retry_after,
            exc.unavailable,
        )
    if isinstance(exc, httpx.TimeoutException | asyncio.TimeoutError):
        return Failure("timeout", "timeout", "provider call timed out")
    if isinstance(exc, httpx.TransportError):
        return Failure("retryable_error", "connection_error", type(exc).__name__)
    # A plugin bug must not lose the message: it is retried like an outage, until maxAge.
    return Failure("retryable_error", "plugin_error", type(exc).__name__)


def counts_against_circuit(failure: Failure) -> bool:
    """A retryable failure (or an unavailable provider) counts toward opening the circuit; a
    permanent one proves the provider answers, so it resets the count like a success."""
    return failure.retryable or failure.unavailable


def backoff_delay(
    attempt: int,
    *,
    initial: float,
    maximum: float,
    retry_after: float | None = None,
    rng: Rng = random.uniform,
) -> float:
    """Seconds to wait after the ``attempt``-th failure (1-based): full jitter over an exponential
    ceiling, or the provider's Retry-After when that is longer."""
    ceiling = min(maximum, initial * 2 ** max(0, attempt - 1))
    delay = rng(0.0, ceiling)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """The parts of ``delivery`` that the failure policy reads."""

    max_attempts: int
    backoff_initial: float
    backoff_max: float


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a message goes after a failed call.

    ``fail``: it fails with the call's error. ``retry``: it waits ``delay`` seconds and is tried
    on ``route_index`` (the same route, or the first one again after the last), having made
    ``route_attempts`` attempts there. ``next_route``: it moves to ``route_index`` now.
    The route changed (a failover) when ``route_index`` differs from the failed call's.
    """

    action: Literal["retry", "next_route", "fail"]
    route_index: int
    route_attempts: int
    delay: float = 0.0


def after_failure(
    failure: Failure,
    *,
    route_index: int,
    route_attempts: int,
    route_count: int,
    attempt_number: int,
    settings: RetrySettings,
    rng: Rng = random.uniform,
) -> Decision:
    """Decide after a failed call on ``route_index`` (0: the channel's provider, n: its n-th
    fallback), which was attempt ``route_attempts`` on that route and ``attempt_number`` of the
    message overall (both counting this one)."""
    if not failure.retryable and not failure.unavailable:
        return Decision("fail", route_index, route_attempts)
    route_done = failure.unavailable or route_attempts >= settings.max_attempts
    if route_done and route_index + 1 < route_count:
        return Decision("next_route", route_index + 1, 0)
    # A retry here, or, every route tried, the first route again: either way after a backoff
    # that keeps growing with the message's attempts (an outage is waited out, not hammered).
    delay = backoff_delay(
        attempt_number,
        initial=settings.backoff_initial,
        maximum=settings.backoff_max,
        retry_after=failure.retry_after,
        rng=rng,
    )
    if route_done:
        return Decision("retry", 0, 0, delay)
    return Decision("retry", route_index, route_attempts, delay)


def expired(*, created_at: float, now: float, max_age: float) -> bool:
    """Only age fails a message that keeps meeting retryable errors."""
    return now - created_at > max_age
