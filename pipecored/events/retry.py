"""When a failed event delivery is tried again (SPEC section 8).

Svix's schedule is the anchor: after the first attempt fails, again in 5 s, 5 min, 30 min, 2 h,
5 h, 10 h and 10 h, a little over 27 hours in all, so an endpoint down for a day still gets
every event. Each wait is stretched or shortened by up to a tenth at random, so that the events
an outage piled up do not all come back in the same second. The time of the next attempt is
stored with the event, which is what makes the schedule survive a restart.
"""

from __future__ import annotations

import random
from typing import Final

ANCHOR_DELAYS_SECONDS: Final[tuple[float, ...]] = (
    5.0,
    5 * 60.0,
    30 * 60.0,
    2 * 3600.0,
    5 * 3600.0,
    10 * 3600.0,
    10 * 3600.0,
)
JITTER_FRACTION: Final = 0.1
# A post with no answer by then counts as failed (SPEC section 8).
ATTEMPT_TIMEOUT_SECONDS: Final = 10.0
MAX_ATTEMPTS: Final = 1 + len(ANCHOR_DELAYS_SECONDS)


def next_attempt_at(
    failed_attempts: int, now: float, *, rng: random.Random | None = None
) -> float | None:
    """When to try again after ``failed_attempts`` attempts have failed (the latest at ``now``),
    or None once the schedule is spent and the event is given up."""
    if failed_attempts < 1:
        raise ValueError("failed_attempts counts the attempts already made, so at least 1")
    if failed_attempts > len(ANCHOR_DELAYS_SECONDS):
        return None
    delay = ANCHOR_DELAYS_SECONDS[failed_attempts - 1]
    spread = (rng or random).uniform(-JITTER_FRACTION, JITTER_FRACTION)
    return now + delay * (1.0 + spread)


def delivery_succeeded(status_code: int) -> bool:
    """Any 2xx answer is success; anything else is tried again."""
    return 200 <= status_code < 300
