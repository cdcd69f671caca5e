"""The failure policy, decision by decision: every row of docs/delivery.md's retry and failover
rules, as a table."""

from __future__ import annotations

import httpx
import pytest

from pipecored.errors import ProviderError, ProviderTimeout
from pipecored.policy import (
    Decision,
    Failure,
    RetrySettings,
    after_failure,
    backoff_delay,
    classify,
    counts_against_circuit,
    expired,
)

SETTINGS = RetrySettings(max_attempts=3, backoff_initial=1.0, backoff_max=300.0)


def ceiling(low: float, high: float) -> float:
    """A deterministic rng: the top of the jitter range."""
    return high


RETRYABLE = Failure("retryable_error", "http_503", "unavailable", 503)
TIMEOUT = Failure("timeout", "timeout", "provider call timed out")
RATE_LIMITED = Failure("retryable_error", "http_429", "slow down", 429, retry_after=42.0)
PERMANENT = Failure("permanent_error", "http_400", "bad number", 400)
UNAVAILABLE = Failure("permanent_error", "http_401", "revoked", 401, unavailable=True)


@pytest.mark.parametrize(
    ("failure", "route_index", "route_attempts", "route_count", "attempt_number", "expected"),
    [
        pytest.param(PERMANENT, 0, 1, 2, 1, Decision("fail", 0, 1), id="permanent-fails-at-once"),
        pytest.param(
            PERMANENT, 1, 1, 2, 4, Decision("fail", 1, 1), id="permanent-on-a-fallback-fails"
        ),
        pytest.param(
            RETRYABLE, 0, 1, 1, 1, Decision("retry", 0, 1, 1.0), id="retryable-retries-here"
        ),
        pytest.param(TIMEOUT, 0, 2, 1, 2, Decision("retry", 0, 2, 2.0), id="timeout-retries-here"),
        pytest.param(
            RETRYABLE, 0, 3, 2, 3, Decision("next_route", 1, 0), id="exhausted-moves-to-fallback"
        ),
        pytest.param(
            RETRYABLE,
            1,
            3,
            2,
            6,
            Decision("retry", 0, 0, 32.0),
            id="last-route-exhausted-starts-again-at-the-first",
        ),
        pytest.param(
            RETRYABLE,
            0,
            3,
            1,
            3,
            Decision("retry", 0, 0, 4.0),
            id="only-route-exhausted-keeps-retrying",
        ),
        pytest.param(
            RETRYABLE,
            0,
            3,
            1,
            40,
            Decision("retry", 0, 0, 300.0),
            id="backoff-capped-at-max-while-cycling",
        ),
        pytest.param(
            UNAVAILABLE, 0, 1, 2, 1, Decision("next_route", 1, 0), id="unavailable-moves-at-once"
        ),
        pytest.param(
            UNAVAILABLE,
            1,
            1,
            2,
            2,
            Decision("retry", 0, 0, 2.0),
            id="unavailable-on-the-last-route-waits-then-starts-again",
        ),
        pytest.param(
            RATE_LIMITED,
            0,
            1,
            1,
            1,
            Decision("retry", 0, 1, 42.0),
            id="retry-after-wins-when-longer",
        ),
    ],
)
def test_after_failure(
    failure: Failure,
    route_index: int,
    route_attempts: int,
    route_count: int,
    attempt_number: int,
    expected: Decision,
) -> None:
    decision = after_failure(
        failure,
        route_index=route_index,
        route_attempts=route_attempts,
        route_count=route_count,
        attempt_number=attempt_number,
        settings=SETTINGS,
        rng=ceiling,
    )
    assert decision == expected


def test_a_retryable_failure_never_fails_whatever_the_attempt_count() -> None:
    for attempt_number in range(1, 500):
        for route_attempts in range(1, 10):
            for route_index in range(3):
                decision = after_failure(
                    RETRYABLE,
                    route_index=route_index,
                    route_attempts=route_attempts,
                    route_count=3,
                    attempt_number=attempt_number,
                    settings=SETTINGS,
                    rng=ceiling,
                )
                assert decision.action != "fail"
                assert 0 <= decision.delay <= SETTINGS.backoff_max


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(
            ProviderError("bad number", retryable=False, code="21211", http_status=400),
            Failure("permanent_error", "21211", "bad number", 400),
            id="provider-permanent",
        ),
        pytest.param(
            ProviderError("busy", retryable=True, http_status=503, retry_after=5.0),
            Failure("retryable_error", "provider_error", "busy", 503, 5.0),
            id="provider-retryable-without-code",
        ),
        pytest.param(
            ProviderError("no", retryable=False),
            Failure("permanent_error", "rejected", "no"),
            id="provider-permanent-without-code",
        ),
        pytest.param(
            ProviderError("revoked", retryable=False, code="20003", unavailable=True),
            Failure("permanent_error", "20003", "revoked", unavailable=True),
            id="provider-unavailable",
        ),
        pytest.param(
            ProviderTimeout(), Failure("timeout", "timeout", "provider call timed out"), id="ours"
        ),
        pytest.param(
            httpx.ReadTimeout("slow"),
            Failure("timeout", "timeout", "provider call timed out"),
            id="httpx-timeout",
        ),
        pytest.param(
            TimeoutError(),
            Failure("timeout", "timeout", "provider call timed out"),
            id="asyncio-timeout",
        ),
        pytest.param(
            httpx.ConnectError("refused"),
            Failure("retryable_error", "connection_error", "ConnectError"),
            id="transport",
        ),
        pytest.param(
            KeyError("plugin bug"),
            Failure("retryable_error", "plugin_error", "KeyError"),
            id="plugin-bug-is-retried-not-lost",
        ),
    ],
)
def test_classify(exc: BaseException, expected: Failure) -> None:
    assert classify(exc) == expected


@pytest.mark.parametrize(
    ("failure", "counts"),
    [
        pytest.param(RETRYABLE, True, id="retryable"),
        pytest.param(TIMEOUT, True, id="timeout"),
        pytest.param(UNAVAILABLE, True, id="unavailable"),
        pytest.param(PERMANENT, False, id="permanent-proves-the-provider-answers"),
    ],
)
def test_counts_against_circuit(failure: Failure, counts: bool) -> None:
    assert counts_against_circuit(failure) is counts


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        pytest.param(1, None, 1.0, id="first"),
        pytest.param(4, None, 8.0, id="doubles"),
        pytest.param(20, None, 300.0, id="capped"),
        pytest.param(1, 60.0, 60.0, id="retry-after-longer"),
        pytest.param(9, 60.0, 256.0, id="retry-after-shorter"),
    ],
)
def test_backoff_ceiling(attempt: int, retry_after: float | None, expected: float) -> None:
    delay = backoff_delay(attempt, initial=1.0, maximum=300.0, retry_after=retry_after, rng=ceiling)
    assert delay == expected


@pytest.mark.parametrize(
    ("age", "max_age", "is_expired"),
    [
        pytest.param(10.0, 86400.0, False, id="young"),
        pytest.param(86400.0, 86400.0, False, id="exactly-max-age"),
        pytest.param(86400.5, 86400.0, True, id="older"),
    ],
)
def test_expired(age: float, max_age: float, is_expired: bool) -> None:
    assert expired(created_at=1000.0, now=1000.0 + age, max_age=max_age) is is_expired
