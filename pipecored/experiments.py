"""Provider experiments' results (SPEC section 10), as pure functions: per arm, its messages,
where they stand and its delivery rate; per experiment, whether the arms' delivery rates differ
by more than chance (a two-proportion z-test).

Delivery rate is as in stats: (delivered + read) / (sent + delivered + read + failed), messages
still on their way left out. With more than two arms, each arm is tested against the first (the
configuration's first arm, usually the incumbent) and the smallest p-value, multiplied by the
number of comparisons (Bonferroni), is the experiment's.

Table-tested in ``tests/test_experiments.py`` against hand computations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

SIGNIFICANCE = 0.05


@dataclass(frozen=True, slots=True)
class ArmCounts:
    name: str
    messages: int
    sent: int  # at sent, no receipt yet
    delivered: int  # delivered or read
    failed: int

    @property
    def settled(self) -> int:
        return self.sent + self.delivered + self.failed

    @property
    def delivery_rate(self) -> float | None:
        return self.delivered / self.settled if self.settled else None


def two_proportion_p_value(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int
) -> float | None:
    """The two-sided p-value of a pooled two-proportion z-test; None when either arm has no
    trials or the pooled proportion is 0 or 1 (no variance: the rates cannot differ)."""
    if trials_a <= 0 or trials_b <= 0:
        return None
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    variance = pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b)
    if variance <= 0:
        return None
    z = (successes_a / trials_a - successes_b / trials_b) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))


def experiment_p_value(arms: Sequence[ArmCounts]) -> float | None:
    """Each arm against the first, on delivery rate; the smallest p-value times the number of
    comparisons (at most 1). None without two arms that have settled messages."""
    if len(arms) < 2:
        return None
    first, others = arms[0], arms[1:]
    values = [
        p
        for arm in others
        if (p := two_proportion_p_value(first.delivered, first.settled, arm.delivered, arm.settled))
        is not None
    ]
    if not values:
        return None
    return min(1.0, min(values) * len(others))


def significant(p_value: float | None) -> bool:
    return p_value is not None and p_value < SIGNIFICANCE
