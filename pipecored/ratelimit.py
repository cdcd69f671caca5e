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

    def full(self) -> bool:
        self._refill()
        return self._tokens >= self.burst

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

    def peek(self, key: str, limit: RateLimit) -> float:
        """The seconds until ``key`` has a token, taking none."""
        current = self._buckets.get(key)
        if current is None or current[0] != limit:
            return 0.0
        return current[1].wait()

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)

    def forget_rested(self) -> None:
        """Forget the keys whose buckets are full again (nothing to remember about them)."""
        self._buckets = {
            k: (limit, bucket) for k, (limit, bucket) in self._buckets.items() if not bucket.full()
        }

    def __len__(self) -> int:
        return len(self._buckets)


class FailedAuthThrottle:
    """Wrong keys, per client address (``auth.failedKeyLimit``: a burst, then a rate). Past that
    the address is answered 429 before its key is looked at, so guessing keys from one address
    is slow however fast it asks."""

    MAX_ADDRESSES = 10_000  # a flood from many addresses cannot grow this without bound

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = KeyedLimits(clock=clock)

    def wait(self, address: str, limit: RateLimit) -> float:
        return self._limits.peek(address, limit)

    def failed(self, address: str, limit: RateLimit) -> None:
        if len(self._limits) >= self.MAX_ADDRESSES:
            self._limits.forget_rested()
        self._limits.take(address, limit)


def gcra_reserve(
    tat: float | None, now: float, *, per_second: float, burst: int
) -> tuple[float, float]:
    """Reserve the next send of a rate limit kept as one number, its theoretical arrival time
    (GCRA, the generic cell rate algorithm: a token bucket of ``burst`` tokens refilled at
    ``per_second``). Returns ``(new_tat, wait)``: the number to keep, and how long this send
    waits before it may go (0: now). The reservation is made whatever the wait, as
    :meth:`TokenBucket.reserve` does.

    One number per limit is what lets several daemons share a limit through their database
    (``UPDATE ... SET tat = ... RETURNING``); the SQLite store keeps it in memory, since one
    daemon owns that file."""
    interval = 1.0 / per_second
    tolerance = (burst - 1) * interval
    start = now if tat is None else max(tat, now)
    wait = max(0.0, start - tolerance - now)
    return start + interval, wait
