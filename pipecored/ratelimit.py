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

    def wait(self) -> float:
        """Seconds until a token is there, taking none (0 if one is there now)."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.per_second

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


class FailedAuthThrottle:
    """Wrong keys, per client address: :data:`BURST` at once, then one every
    1/:data:`PER_SECOND` s. Past that the address is answered 429 before its key is looked at,
    so guessing keys from one address is slow however fast it asks."""

    BURST = 20
    PER_SECOND = 0.5
    MAX_ADDRESSES = 10_000  # a flood from many addresses cannot grow this without bound

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self.clock = clock

    def wait(self, address: str) -> float:
        bucket = self._buckets.get(address)
        return 0.0 if bucket is None else bucket.wait()

    def failed(self, address: str) -> None:
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.MAX_ADDRESSES:
                # forget the addresses that have earned their whole burst back
                self._buckets = {a: b for a, b in self._buckets.items() if b.wait() > 0}
            bucket = TokenBucket(self.PER_SECOND, self.BURST, clock=self.clock)
            self._buckets[address] = bucket
        bucket.try_take()
