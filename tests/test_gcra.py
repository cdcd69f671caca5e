"""The rate limit as one number (GCRA): table tests against the token bucket it stands for."""

from __future__ import annotations

import pytest

from pipecored.ratelimit import TokenBucket, gcra_reserve


@pytest.mark.parametrize(
    ("per_second", "burst", "times", "waits"),
    [
        # a burst of 1: one send per interval, the rest queue behind it
        (5.0, 1, [0.0, 0.0, 0.0], [0.0, 0.2, 0.4]),
        # a burst of 3: three at once, then one per interval
        (5.0, 3, [0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.2, 0.4]),
        # time passing refills it
        (5.0, 1, [0.0, 1.0, 1.0], [0.0, 0.0, 0.2]),
        # a reservation made far ahead still counts: the third send waits behind the second
        (1.0, 1, [0.0, 0.5, 0.6], [0.0, 0.5, 1.4]),
        # idle for long: no credit beyond the burst
        (2.0, 2, [0.0, 100.0, 100.0, 100.0], [0.0, 0.0, 0.0, 0.5]),
    ],
)
def test_waits(per_second: float, burst: int, times: list[float], waits: list[float]) -> None:
    tat = None
    got = []
    for now in times:
        tat, wait = gcra_reserve(tat, now, per_second=per_second, burst=burst)
        got.append(round(wait, 9))
    assert got == pytest.approx(waits)


@pytest.mark.parametrize(("per_second", "burst"), [(5.0, 1), (5.0, 4), (0.5, 2), (100.0, 10)])
def test_same_waits_as_the_token_bucket(per_second: float, burst: int) -> None:
    clock = [0.0]
    bucket = TokenBucket(per_second, burst, clock=lambda: clock[0])
    tat = None
    for step in [0.0, 0.0, 0.01, 0.3, 0.3, 0.31, 2.0, 2.0, 2.0, 2.0, 7.5, 7.5]:
        clock[0] = step
        tat, wait = gcra_reserve(tat, step, per_second=per_second, burst=burst)
        assert wait == pytest.approx(bucket.reserve(), abs=1e-9), step
