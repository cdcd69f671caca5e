"""Which route a message takes, as a pure function.

A channel's routes are its provider followed by its fallbacks (``ChannelConfig.routes``). A
message is on one of them (``route_index``). Before a call, routes whose circuit is open are
passed over in order, wrapping around to the first route after the last, so that a message
waiting out an outage goes to whichever provider comes back first; with every circuit open the
message waits, without an attempt being counted, until the earliest trial call.

Table-tested in ``tests/test_routing.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Go:
    """Call the route at ``index``. ``skipped`` are the routes passed over on the way (their
    circuits were open), in order; empty when the message's own route takes it."""

    index: int
    skipped: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Wait:
    """Every route's circuit is open: try again at the earliest of their trial calls."""

    index: int


def choose_route(
    providers: Sequence[str], start: int, *, allows: Callable[[str], bool]
) -> Go | Wait:
    """``providers`` are the channel's routes' provider names; ``start`` the message's route
    (clamped, since a reload may have removed fallbacks); ``allows(provider)`` says whether that
    route's circuit lets a call through now (asking it may take the circuit's one trial call, so
    it is asked only until one route allows)."""
    count = len(providers)
    start = min(start, count - 1)
    skipped: list[int] = []
    for step in range(count):
        index = (start + step) % count
        if allows(providers[index]):
            return Go(index, tuple(skipped))
        skipped.append(index)
    return Wait(start)


def assign_arm(arms: Sequence[tuple[str, float]], message_id: str) -> str | None:
    """The experiment arm a message goes to (SPEC section 10): deterministic per message, from
    a hash of its id, with each arm's chance its weight over the total (weights are relative;
    an arm of weight 0 gets nothing). None when no arm has weight."""
    total = sum(weight for _, weight in arms if weight > 0)
    if total <= 0:
        return None
    digest = hashlib.sha256(message_id.encode("utf-8")).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * total  # uniform in [0, total)
    for name, weight in arms:
        if weight <= 0:
            continue
        if point < weight:
            return name
        point -= weight
    return next(name for name, weight in reversed(arms) if weight > 0)  # float rounding
