"""Provider experiments as pure functions (SPEC section 10): which arm a message goes to, and
whether the arms' delivery rates differ, against hand computations."""

from __future__ import annotations

import math

import pytest

from pipecored.experiments import (
    ArmCounts,
    experiment_p_value,
    significant,
    two_proportion_p_value,
)
from pipecored.routing import assign_arm

ARMS = [("twilio", 90.0), ("meta", 10.0)]


def test_an_arm_is_a_function_of_the_message_id() -> None:
    ids = [f"msg_{n:028x}" for n in range(200)]
    first = [assign_arm(ARMS, m) for m in ids]
    assert first == [assign_arm(ARMS, m) for m in ids]
    assert set(first) == {"twilio", "meta"}


@pytest.mark.parametrize(
    ("arms", "expected"),
    [
        pytest.param([("a", 1.0)], {"a"}, id="one-arm"),
        pytest.param([("a", 0.0), ("b", 5.0)], {"b"}, id="weight-0-stops-an-arm"),
        pytest.param([("a", 3.0), ("b", 0.0), ("c", 3.0)], {"a", "c"}, id="zero-in-the-middle"),
        pytest.param([("a", 0.0), ("b", 0.0)], {None}, id="no-weight-no-arm"),
        pytest.param([], {None}, id="no-arms"),
    ],
)
def test_arms_that_can_be_chosen(arms: list[tuple[str, float]], expected: set[str | None]) -> None:
    assert {assign_arm(arms, f"msg_{n}") for n in range(300)} == expected


@pytest.mark.parametrize(("weights", "n"), [((90.0, 10.0), 20_000), ((1.0, 1.0, 2.0), 20_000)])
def test_shares_follow_the_weights_within_binomial_noise(
    weights: tuple[float, ...], n: int
) -> None:
    arms = [(f"arm{i}", w) for i, w in enumerate(weights)]
    picks = [assign_arm(arms, f"msg_{k:012x}{k * 7919:016x}") for k in range(n)]
    total = sum(weights)
    for name, weight in arms:
        p = weight / total
        sd = math.sqrt(n * p * (1 - p))
        assert abs(picks.count(name) - n * p) < 4 * sd, (name, picks.count(name), n * p)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # 90/100 against 80/100: pooled 0.85, se = sqrt(.85*.15*(2/100)) = 0.050498,
        # z = 0.1/0.050498 = 1.98030, p = erfc(1.98030/sqrt 2) = 0.047671
        pytest.param((90, 100, 80, 100), 0.047671, id="hand-computed"),
        # 450/500 against 45/50: the same rates, z = 0
        pytest.param((450, 500, 45, 50), 1.0, id="same-rate"),
        # 880/900 against 60/100: pooled 0.94, se = sqrt(.94*.06*(1/900+1/100)) = 0.025033,
        # z = (0.977778-0.6)/0.025033 = 15.091, p = erfc(15.091/sqrt 2) = 1.856e-51
        pytest.param((880, 900, 60, 100), 1.856e-51, id="a-failing-arm"),
    ],
)
def test_the_two_proportion_test(counts: tuple[int, int, int, int], expected: float) -> None:
    p = two_proportion_p_value(*counts)
    assert p is not None
    assert p == pytest.approx(expected, rel=1e-3, abs=0)


@pytest.mark.parametrize(
    "counts",
    [
        pytest.param((0, 0, 5, 10), id="no-trials"),
        pytest.param((10, 10, 20, 20), id="all-delivered"),
        pytest.param((0, 10, 0, 20), id="none-delivered"),
    ],
)
def test_no_p_value_without_variance(counts: tuple[int, int, int, int]) -> None:
    assert two_proportion_p_value(*counts) is None


def _arm(name: str, delivered: int, failed: int, sent: int = 0) -> ArmCounts:
    return ArmCounts(name, delivered + failed + sent, sent, delivered, failed)


def test_an_experiment_tests_each_arm_against_the_first_with_bonferroni() -> None:
    control = _arm("twilio", 90, 10)
    same = _arm("meta", 9, 1)
    worse = _arm("other", 80, 20)
    assert experiment_p_value([control]) is None
    two = experiment_p_value([control, worse])
    assert two == pytest.approx(0.047671, rel=1e-3, abs=0)
    assert significant(two)
    three = experiment_p_value([control, same, worse])
    assert three == pytest.approx(2 * 0.047671, rel=1e-3, abs=0)
    assert not significant(three)


def test_a_delivery_rate_leaves_messages_on_their_way_out() -> None:
    arm = ArmCounts("a", messages=10, sent=2, delivered=6, failed=2)
    assert arm.delivery_rate == pytest.approx(0.6)
    assert ArmCounts("b", messages=3, sent=0, delivered=0, failed=0).delivery_rate is None
