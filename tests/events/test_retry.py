"""The retry schedule: Svix's anchor with bounded jitter, then given up."""

from __future__ import annotations

import random

import pytest

from pipecored.events.retry import (
    ANCHOR_DELAYS_SECONDS,
    MAX_ATTEMPTS,
    delivery_succeeded,
    next_attempt_at,
)


def test_the_anchor_schedule_is_spec_section_8s() -> None:
    assert ANCHOR_DELAYS_SECONDS == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert MAX_ATTEMPTS == 8
    assert sum(ANCHOR_DELAYS_SECONDS) >= 24 * 3600  # at least a day of retries


@pytest.mark.parametrize("failed", range(1, 8))
def test_each_wait_is_its_anchor_within_a_tenth(failed: int) -> None:
    rng = random.Random(failed)
    anchor = ANCHOR_DELAYS_SECONDS[failed - 1]
    waits = [next_attempt_at(failed, 1000.0, rng=rng) for _ in range(200)]

    assert all(w is not None and 0.9 * anchor <= w - 1000.0 <= 1.1 * anchor for w in waits)
    assert len({w for w in waits}) > 1  # jittered, not all the same instant


def test_after_the_last_anchor_the_event_is_given_up() -> None:
    assert next_attempt_at(len(ANCHOR_DELAYS_SECONDS) + 1, 1000.0) is None


def test_zero_failed_attempts_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        next_attempt_at(0, 1000.0)


@pytest.mark.parametrize(
    ("status", "ok"),
    [(200, True), (204, True), (299, True), (301, False), (410, False), (500, False)],
)
def test_only_2xx_is_success(status: int, ok: bool) -> None:
    assert delivery_succeeded(status) is ok
