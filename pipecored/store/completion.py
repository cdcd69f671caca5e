"""What recording an attempt does to a message, decided once for every store: the fields the
message ends with, and the events the change emits. Pure; the stores apply it in the
transaction that records the attempt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from pipecored.events.kinds import MESSAGE_FAILOVER, STATUS_EVENTS
from pipecored.store.base import (
    AttemptOutcome,
    EventSource,
    Failover,
    MessageRecord,
    NewEvent,
    moves_forward,
)

# (event type, the status the message had when it happened (None: as the change left it), extra
# data beside the message's log item)
EmittedEvent = tuple[str, str | None, Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class Completion:
    status: str
    error_code: str | None
    error_message: str | None
    provider: str | None
    provider_message_id: str | None
    sent_at: float | None
    latency_ms: float | None  # None: keep what the message had


def complete(current: Mapping[str, Any], outcome: AttemptOutcome, now: float) -> Completion:
    """The message's fields after ``outcome``, from its ``current`` row (status, error_code,
    error_message, provider, provider_message_id, sent_at, created_at).

    A callback that overtook the provider's answer (delivered before our sent is written) is
    the newer news: its status and error fields stay. A provider's acceptance sets ``sent_at``
    and the latency from acceptance."""
    status: str = current["status"]
    if status in ("queued", "sending") or moves_forward(status, outcome.status):
        status, error_code, error_message = (
            outcome.status,
            outcome.error_code,
            outcome.error_message,
        )
    else:
        error_code, error_message = current["error_code"], current["error_message"]
    sent_at: float | None = current["sent_at"]
    latency_ms = None
    if outcome.status in ("sent", "delivered"):
        sent_at = outcome.sent_at if outcome.sent_at is not None else now
        latency_ms = (sent_at - current["created_at"]) * 1000
    return Completion(
        status=status,
        error_code=error_code,
        error_message=error_message,
        provider=outcome.provider if outcome.provider is not None else current["provider"],
        provider_message_id=(
            outcome.provider_message_id
            if outcome.provider_message_id is not None
            else current["provider_message_id"]
        ),
        sent_at=sent_at,
        latency_ms=latency_ms,
    )


def update_values(
    done: Completion, outcome: AttemptOutcome, now: float, seq: int
) -> tuple[object, ...]:
    """The parameters of each store's UPDATE of the completed message, in the order both write
    them: status, provider, route_index, route_attempts, error_code, error_message, not_before,
    provider_message_id, sent_at, latency_ms (None keeps the stored one), attempts added,
    updated_at, seq."""
    return (
        done.status,
        done.provider,
        outcome.route_index,
        outcome.route_attempts,
        done.error_code,
        done.error_message,
        outcome.not_before,
        done.provider_message_id,
        done.sent_at,
        done.latency_ms,
        0 if outcome.attempt is None else 1,
        now,
        seq,
    )


def completion_events(
    outcome: AttemptOutcome, previous: str, status: str, deferred: Sequence[str]
) -> list[EmittedEvent]:
    """The events of recording an attempt: a ``message.failover`` per move to another route,
    then one per status the message reached (its own, then those of callbacks held for it)."""
    reached = ([status] if status != previous else []) + list(deferred)
    emitted: list[EmittedEvent] = [
        (MESSAGE_FAILOVER, None, {"failover": failover_data(f)}) for f in outcome.failovers
    ]
    emitted += [(STATUS_EVENTS[s], s, None) for s in reached if s in STATUS_EVENTS]
    return emitted


def failover_data(failover: Failover) -> dict[str, str]:
    return {"from": failover.from_provider, "to": failover.to_provider, "reason": failover.reason}


def message_events(
    source: EventSource, record: MessageRecord, emitted: Sequence[EmittedEvent], now: float
) -> list[NewEvent | None]:
    """The events ``emitted`` by a change that left the message as ``record``: each built with
    the status the message had when it happened (a ``message.sent`` says sent even when a held
    callback moved it on to delivered at once)."""
    return [
        source.message_event(
            event_type,
            record if status is None else replace(record, status=cast(Any, status)),
            now=now,
            extra=extra,
        )
        for event_type, status, extra in emitted
    ]
