"""What a failure means for a message, as pure functions: retry on this route, move to the next
route, wait, or fail; and the backoff schedule. No I/O, no clock: callers pass ``now``."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    *,
    initial: float,
    maximum: float,
    retry_after: float | None = None,
    rng: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait after the ``attempt``-th failure (1-based): full jitter over an exponential
    ceiling, or the provider's Retry-After when that is longer."""
    ceiling = min(maximum, initial * 2 ** max(0, attempt - 1))
    delay = rng(0.0, ceiling)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay
