"""Token buckets: a steady ``per_second`` rate with bursts up to ``burst``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class RateLimit(Protocol):
    @property
    def per_second(self) -> float: ...
    @property
    def burst(self) -> int: ...


class TokenBucket:
    def __init__(
        self, per_second: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def _refill(self) -> float:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.per_second)
        self._updated = now
        return now

    def reserve(self) -> float:
        """Take a token, possibly one not yet earned; returns how long to wait before using it."""
        self._refill()
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.per_second

    def try_take(self) -> float:
        """Take a token if one is there (returns 0), else take none and return the wait."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.per_second

    def backlog(self) -> float:
        """Seconds of reservations already made beyond the tokens available (0 if none)."""
        self._refill()
        return max(0.0, -self._tokens / self.per_second)


class KeyedLimits:
    """One bucket per key (a tenant), rebuilt when its configured limit changes."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, tuple[object, TokenBucket]] = {}
        self.clock = clock

    def take(self, key: str, limit: RateLimit) -> float:
        """Take a token for ``key``; 0 if there was one, else the seconds until there is."""
        current = self._buckets.get(key)
        if current is None or current[0] != limit:
            current = (limit, TokenBucket(limit.per_second, limit.burst, clock=self.clock))
            self._buckets[key] = current
        return current[1].try_take()

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)
