"""Circuit breakers: one per (tenant, channel, provider).

Closed: calls go through; ``failureThreshold`` consecutive retryable failures open it. Open: no
calls; messages go to the channel's fallback or wait. After ``cooldown`` one trial call goes
through (half-open): its success closes the circuit, its failure opens it for another cooldown.

Opening and closing are reported to listeners (metrics, alerts) with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

CircuitKey = tuple[str, str, str]  # tenant, channel, provider
HALF_OPEN_POLL = 1.0
State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class CircuitChange:
    tenant: str
    channel: str
    provider: str
    state: Literal["open", "closed"]
    reason: str  # the failure that opened it, or what closed it
    at: float  # when it changed
    opened_at: float  # when the outage began (for a close: when it had opened)


CircuitListener = Callable[[CircuitChange], None]


@dataclass(slots=True)
class _Circuit:
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0  # last (re)opening: the cooldown counts from here
    outage_since: float = 0.0  # first opening of this outage
    trial_started: float | None = None
    last_reason: str = ""


class CircuitBreakers:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._circuits: dict[CircuitKey, _Circuit] = {}
        self.listeners: list[CircuitListener] = []
        self.clock = clock

    def state(self, key: CircuitKey) -> State:
        circuit = self._circuits.get(key)
        return circuit.state if circuit else "closed"

    def retry_at(self, key: CircuitKey, cooldown: float) -> float:
        """When a message waiting on this circuit should look again: when an open circuit lets
        its trial through, or, while the trial is out, shortly (its answer decides)."""
        circuit = self._circuits.get(key)
        now = self.clock()
        if circuit is None or circuit.state == "closed":
            return now
        if circuit.state == "open":
            return max(now, circuit.opened_at + cooldown)
        return now + min(cooldown, HALF_OPEN_POLL)

    def allow(self, key: CircuitKey, *, cooldown: float, trial_timeout: float) -> bool:
        """May a call go to this provider now? In half-open state only one trial at a time."""
        circuit = self._circuits.get(key)
        if circuit is None or circuit.state == "closed":
            return True
        now = self.clock()
        if circuit.state == "open":
            if now - circuit.opened_at < cooldown:
                return False
            circuit.state = "half_open"
            circuit.trial_started = now
            return True
        # half-open: a trial whose answer never came (a crash mid-call) must not wedge it
        if circuit.trial_started is not None and now - circuit.trial_started < trial_timeout:
            return False
        circuit.trial_started = now
        return True

    def success(self, key: CircuitKey) -> None:
        circuit = self._circuits.get(key)
        if circuit is None:
            return
        was_open = circuit.state != "closed"
        del self._circuits[key]
        if was_open:
            self._emit(key, "closed", "a trial call succeeded", circuit.outage_since)

    def failure(self, key: CircuitKey, *, threshold: int, reason: str) -> None:
        circuit = self._circuits.setdefault(key, _Circuit())
        circuit.failures += 1
        circuit.last_reason = reason
        now = self.clock()
        if circuit.state == "half_open":
            circuit.state = "open"
            circuit.opened_at = now
            circuit.trial_started = None
        elif circuit.state == "closed" and circuit.failures >= threshold:
            circuit.state = "open"
            circuit.opened_at = circuit.outage_since = now
            self._emit(key, "open", reason, now)

    def tracked(self) -> list[CircuitKey]:
        """The circuits that have seen failures (the rest are closed by default)."""
        return list(self._circuits)

    def forget(self, key: CircuitKey) -> None:
        self._circuits.pop(key, None)

    def forget_tenant(self, tenant: str) -> None:
        for key in [k for k in self._circuits if k[0] == tenant]:
            del self._circuits[key]

    def _emit(
        self, key: CircuitKey, state: Literal["open", "closed"], reason: str, opened: float
    ) -> None:
        change = CircuitChange(*key, state=state, reason=reason, at=self.clock(), opened_at=opened)
        for listener in self.listeners:
            listener(change)
