"""Quiet hours, as a pure function: when may a message accepted now go?

A tenant's ``quietHours`` is a window of local wall-clock time in an IANA time zone
(``22:00``-``08:00`` crosses midnight); a message accepted inside it waits for its end. Wall
clock, not UTC offsets: across a daylight-saving change the window still ends at 08:00 local
time. An end that falls in a skipped hour (spring forward) is the first instant after the gap;
one that occurs twice (fall back) is its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pipecored.config.model import QuietHoursConfig


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _local(day: datetime, at: time, zone: ZoneInfo) -> datetime:
    """``at`` on ``day``'s date in ``zone``, as an aware datetime that exists."""
    naive = datetime.combine(day.date(), at)
    first = naive.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive:
        return first
    # A wall time in a spring-forward gap never happens: the window ends when the clock jumps
    # past it. fold=1 reads it with the later offset, an instant before the jump; walk to it.
    instant = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    while instant.astimezone(zone).replace(tzinfo=None) < naive:
        instant += timedelta(minutes=1)
    return instant.astimezone(zone)


def held_until(quiet: QuietHoursConfig, channel: str, now: float) -> float | None:
    """The UNIX time a message on ``channel`` accepted at ``now`` may go, or None if it may go
    at once (outside the window, or a channel the window does not cover)."""
    if quiet.channels and channel not in quiet.channels:
        return None
    zone = ZoneInfo(quiet.timezone)
    start, end = _clock(quiet.start), _clock(quiet.end)
    if start == end:
        return None  # an empty window
    local = datetime.fromtimestamp(now, zone)
    wall = local.time().replace(tzinfo=None)
    if start < end:  # same day, e.g. 13:00-15:00
        if start <= wall < end:
            return _local(local, end, zone).timestamp()
        return None
    # crosses midnight, e.g. 22:00-08:00
    if wall >= start:
        return _local(local + timedelta(days=1), end, zone).timestamp()
    if wall < end:
        return _local(local, end, zone).timestamp()
    return None
