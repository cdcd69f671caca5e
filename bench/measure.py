"""Small measuring tools: percentiles, a process's CPU use, the machine's load."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` from 0 to 100) of unsorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def load_average() -> float:
    return os.getloadavg()[0]


@dataclass
class CpuWindow:
    """CPU used by a process between ``start()`` and ``stop()``, as a share of one core."""

    pid: int
    _cpu0: float = 0.0
    _t0: float = 0.0
    share: float = 0.0

    def start(self) -> CpuWindow:
        self._cpu0, self._t0 = cpu_seconds(self.pid), time.monotonic()
        return self

    def stop(self) -> float:
        elapsed = time.monotonic() - self._t0
        self.share = (cpu_seconds(self.pid) - self._cpu0) / elapsed if elapsed > 0 else 0.0
        return self.share
