"""Quiet hours with a fixed clock, across midnight and across daylight-saving changes."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from pipecored.config.model import QuietHoursConfig
from pipecored.quiet_hours import held_until

MADRID = ZoneInfo("Europe/Madrid")
NIGHT = QuietHoursConfig(timezone="Europe/Madrid", start="22:00", end="08:00", channels=("sms",))
SIESTA = QuietHoursConfig(timezone="Europe/Madrid", start="14:00", end="16:30")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=MADRID).timestamp()


def local(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, MADRID).isoformat()


@pytest.mark.parametrize(
    ("quiet", "channel", "now", "expected"),
    [
        pytest.param(NIGHT, "sms", "2026-11-28 21:59", None, id="before-the-window"),
        pytest.param(
            NIGHT, "sms", "2026-11-28 22:00", "2026-11-29T08:00:00+01:00", id="at-its-start"
        ),
        pytest.param(
            NIGHT, "sms", "2026-11-28 23:30", "2026-11-29T08:00:00+01:00", id="before-midnight"
        ),
        pytest.param(
            NIGHT, "sms", "2026-11-29 03:00", "2026-11-29T08:00:00+01:00", id="after-midnight"
        ),
        pytest.param(NIGHT, "sms", "2026-11-29 08:00", None, id="at-its-end"),
        pytest.param(NIGHT, "whatsapp", "2026-11-28 23:30", None, id="a-channel-not-covered"),
        pytest.param(
            SIESTA, "email", "2026-11-28 15:00", "2026-11-28T16:30:00+01:00", id="same-day-window"
        ),
        pytest.param(SIESTA, "email", "2026-11-28 16:30", None, id="same-day-after"),
        # Spain springs forward on 2027-03-28 at 02:00 -> 03:00; the window still ends at 08:00
        # local, which is then UTC+2
        pytest.param(
            NIGHT, "sms", "2027-03-27 23:00", "2027-03-28T08:00:00+02:00", id="spring-forward"
        ),
        # and falls back on 2026-10-25 at 03:00 -> 02:00
        pytest.param(NIGHT, "sms", "2026-10-24 23:00", "2026-10-25T08:00:00+01:00", id="fall-back"),
    ],
)
def test_held_until(quiet: QuietHoursConfig, channel: str, now: str, expected: str | None) -> None:
    assert local(held_until(quiet, channel, at(now))) == expected


def test_a_window_ending_in_the_skipped_hour_ends_when_the_clock_jumps() -> None:
    quiet = QuietHoursConfig(timezone="Europe/Madrid", start="22:00", end="02:30")
    # 02:30 does not exist on 2027-03-28 in Madrid: the first instant after the gap is 03:00
    assert local(held_until(quiet, "sms", at("2027-03-28 01:00"))) == "2027-03-28T03:00:00+02:00"
