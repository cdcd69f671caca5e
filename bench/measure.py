"""Small measuring tools: percentiles, a process's CPU use, the machine's load."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
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


class CpuWindow:
    """CPU used by one or more processes (the nodes of one system) between ``start()`` and
    ``stop()``: ``seconds`` in all, ``share`` of one core over the window."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self._cpu0 = self._t0 = 0.0
        self.seconds = self.elapsed = self.share = 0.0

    def _now(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def start(self) -> CpuWindow:
        self._cpu0, self._t0 = self._now(), time.monotonic()
        return self

    def stop(self) -> float:
        self.elapsed = time.monotonic() - self._t0
        self.seconds = self._now() - self._cpu0
        self.share = self.seconds / self.elapsed if self.elapsed > 0 else 0.0
        return self.share
