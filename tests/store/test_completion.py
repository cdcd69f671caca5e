"""What recording an attempt does to a message, as the one pure decision both stores apply."""

from __future__ import annotations

from typing import Any

import pytest

from pipecored.store import AttemptOutcome, Failover
from pipecored.store.completion import complete, completion_events

ROW = {
    "status": "sending",
    "error_code": None,
    "error_message": None,
    "provider": None,
    "provider_message_id": None,
    "sent_at": None,
    "created_at": 100.0,
}


def _outcome(status: Any, **fields: Any) -> AttemptOutcome:
    base: dict[str, Any] = {
        "message_id": "m",
        "lease_token": "t",
        "attempt": None,
        "provider": "twilio",
        "route_index": 0,
        "route_attempts": 1,
    }
    return AttemptOutcome(status=status, **{**base, **fields})


@pytest.mark.parametrize(
    ("current", "outcome", "status", "sent_at", "latency_ms", "error"),
    [
        pytest.param({}, _outcome("sent", sent_at=100.25), "sent", 100.25, 250.0, None, id="sent"),
        pytest.param(
            {}, _outcome("queued", error_code="http_503"), "queued", None, None, "http_503",
            id="retry",
        ),
        pytest.param(
            {}, _outcome("failed", error_code="invalid_number"), "failed", None, None,
            "invalid_number", id="failed",
        ),
        # a delivery receipt that overtook the provider's answer stays
        pytest.param(
            {"status": "delivered"}, _outcome("sent", sent_at=101.0), "delivered", 101.0, 1000.0,
            None, id="overtaken-by-a-receipt",
        ),
        # a bounce recorded before the answer: its error stays too
        pytest.param(
            {"status": "failed", "error_code": "bounced"}, _outcome("sent", sent_at=101.0),
            "failed", 101.0, 1000.0, "bounced", id="overtaken-by-a-failure",
        ),
    ],
)  # fmt: skip
def test_the_fields_a_message_ends_with(
    current: dict[str, Any],
    outcome: AttemptOutcome,
    status: str,
    sent_at: float | None,
    latency_ms: float | None,
    error: str | None,
) -> None:
    done = complete({**ROW, **current}, outcome, now=200.0)
    assert (done.status, done.sent_at, done.latency_ms, done.error_code) == (
        status,
        sent_at,
        latency_ms,
        error,
    )
    assert done.provider == "twilio"


def test_an_answer_without_its_time_is_sent_now() -> None:
    assert complete(ROW, _outcome("sent"), now=100.5).sent_at == 100.5


@pytest.mark.parametrize(
    ("previous", "status", "deferred", "failovers", "expected"),
    [
        pytest.param("sending", "sent", [], (), ["message.sent"], id="sent"),
        pytest.param("sending", "queued", [], (), [], id="a-retry-says-nothing"),
        pytest.param(
            "sending", "sent", ["delivered"], (), ["message.sent", "message.delivered"],
            id="held-receipt",
        ),
        pytest.param(
            "sending", "queued", [], (Failover("twilio", "meta", "http_503"),),
            ["message.failover"], id="failover",
        ),
        pytest.param("delivered", "delivered", [], (), [], id="nothing-new"),
    ],
)  # fmt: skip
def test_the_events_of_an_attempt(
    previous: str,
    status: str,
    deferred: list[str],
    failovers: tuple[Failover, ...],
    expected: list[str],
) -> None:
    emitted = completion_events(_outcome(status, failovers=failovers), previous, status, deferred)
    assert [event_type for event_type, _, _ in emitted] == expected
