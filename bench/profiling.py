"""Sample the daemon with py-spy while a phase runs, and summarize where its time goes.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``, root first).
Self time is the leaf frame of each sample; inclusive time counts each function once per stack.
With ``gil`` (the default) only the thread holding the interpreter is sampled: the daemon is
bound by its one interpreter (event loop, SQLite writer, readers share it), so that is where its
time goes. Without it, py-spy samples every thread it sees busy, and counts some threads
waiting on a lock or queue as busy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>.+?)(?::\d+)?\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


@dataclass
class Profile:
    label: str
    samples: int = 0
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    def top(self, kind: str, n: int = 12) -> list[tuple[str, float]]:
        counts = self.self_time if kind == "self" else self.inclusive
        total = self.samples or 1
        return [(name, 100.0 * count / total) for name, count in counts.most_common(n)]


def _short(frame: str) -> str:
    """``func (path/to/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    parts = Path(match["file"]).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    elif "pipecored" in parts:
        parts = parts[parts.index("pipecored") :]
    else:
        parts = parts[-2:]
    return f"{match['func']} ({'/'.join(parts)})"


def summarize(label: str, raw: str) -> Profile:
    profile = Profile(label)
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f.strip()]
        # py-spy may prefix process/thread pseudo-frames; they carry no file
        frames = [f for f in frames if "(" in f]
        if not frames:
            continue
        profile.samples += count
        profile.self_time[frames[-1]] += count
        for name in set(frames):
            profile.inclusive[name] += count
    return profile


class Recorder:
    """``py-spy record`` attached to ``pid`` for ``seconds``; ``finish()`` returns the profile
    (or one whose ``error`` says why there is none: py-spy missing, ptrace not permitted)."""

    def __init__(
        self, label: str, pid: int, seconds: float, out: Path, rate: int = 100, gil: bool = True
    ) -> None:
        self.label = label
        self.out = out
        self.proc: subprocess.Popen[str] | None = None
        self.error: str | None = None
        exe = py_spy()
        if exe is None:
            self.error = "py-spy not installed"
            return
        self.proc = subprocess.Popen(
            [
                exe,
                *("record", "-p", str(pid), "-d", str(max(1, round(seconds)))),
                *("-r", str(rate), "-f", "raw", "-o", str(out), "--nonblocking"),
                *(["--gil"] if gil else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def finish(self, timeout: float = 60.0) -> Profile:
        if self.proc is None:
            return Profile(self.label, error=self.error)
        try:
            output, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return Profile(self.label, error="py-spy did not finish")
        if self.proc.returncode != 0 or not self.out.exists():
            return Profile(self.label, error=f"py-spy failed: {output.strip()[-300:]}")
        return summarize(self.label, self.out.read_text(encoding="utf-8", errors="replace"))
