"""What a run found: table rows and profiles, printed and written as Markdown."""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.profiling import Profile


@dataclass
class Row:
    section: str
    metric: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    ok: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline


@dataclass
class Results:
    smoke: bool
    rows: list[Row] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_before: float = 0.0
    load_after: float = 0.0

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {format_row(row)}", flush=True)
        return row

    def to_json(self) -> dict[str, Any]:
        return {
            "smoke": self.smoke,
            "started": self.started.isoformat(),
            "cpus": os.cpu_count(),
            "load_before": self.load_before,
            "load_after": self.load_after,
            "rows": [{**asdict(r), "ratio": r.ratio} for r in self.rows],
            "profiles": [
                {
                    "label": p.label,
                    "samples": p.samples,
                    "error": p.error,
                    "self": p.top("self"),
                    "inclusive": p.top("inclusive"),
                }
                for p in self.profiles
            ],
            "notes": self.notes,
        }


def _num(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit in ("/s", "MiB", "") or abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "**no**")


def format_row(row: Row) -> str:
    parts = [f"[{row.section}] {row.metric}: {_num(row.value, row.unit)}"]
    if row.baseline is not None:
        parts.append(f"{row.baseline_name} {_num(row.baseline, row.unit)}")
    if row.ratio is not None:
        parts.append(f"ratio {row.ratio:.2f}")
    if row.target:
        parts.append(f"target {row.target} -> {'ok' if row.ok else 'MISSED'}")
    if row.note:
        parts.append(row.note)
    return "; ".join(parts)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tool_versions() -> str:
    wrk = shutil.which("wrk")
    version = "not installed (Python load generator used)"
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        lines = (out.stdout + out.stderr).strip().splitlines()
        version = lines[0].split(" Copyright")[0] if lines else "wrk"
    return f"Python {platform.python_version()}; load generator: {version}"


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| phase | measurement | pipecored | baseline (same run) | ratio | target | met | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        baseline = f"{r.baseline_name}: {_num(r.baseline, r.unit)}" if r.baseline else ""
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        lines.append(
            f"| {r.section} | {r.metric} | {_num(r.value, r.unit)} | {baseline} | {ratio}"
            f" | {r.target} | {_verdict(r.ok)} | {r.note} |"
        )
    return "\n".join(lines)


def markdown_profiles(profiles: list[Profile], n: int = 12) -> str:
    out: list[str] = []
    for p in profiles:
        out.append(f"### Profile: {p.label}\n")
        if p.error:
            out.append(f"Not profiled: {p.error}\n")
            continue
        out.append(
            f"py-spy `--gil`, {p.samples:,} samples of whichever thread held the interpreter (the"
            " event loop, the SQLite writer, a reader). Self time is where the samples landed;"
            " inclusive counts a function once per sample it is on the stack of.\n"
        )
        out.append("| self % | function | | inclusive % | function |")
        out.append("|---|---|---|---|---|")
        inclusive = [
            (name, pct)
            for name, pct in p.top("inclusive", 60)
            if not name.startswith(("_run", "<module>", "Thread.", "main (", "cmd_serve"))
            and "runpy" not in name
        ][:n]
        for (s_name, s_pct), (i_name, i_pct) in zip(p.top("self", n), inclusive, strict=False):
            out.append(f"| {s_pct:.1f} | `{s_name}` | | {i_pct:.1f} | `{i_name}` |")
        out.append("")
    return "\n".join(out)


def render_markdown(results: Results, command: str) -> str:
    date = results.started.strftime("%Y-%m-%d %H:%M UTC")
    header = f"""# Performance

Measured by `{command}` on {date}: {os.cpu_count()} CPUs ({cpu_model()}), {tool_versions()}.
Load average (1 min) {results.load_before:.2f} before the run and {results.load_after:.2f} after
it: the benchmark shares the machine with whatever else runs there, so compare ratios to the
baselines measured in the same run rather than absolute numbers across runs.

Every process runs on this one machine over loopback: `pipecored serve` (SQLite, WAL,
`synchronous=FULL`, group commit; PostgreSQL in section 4), the fake providers (aiohttp on
uvloop, `POST /messages` -> `201 {{"id"}}`), the floor (`bench/floor_app.py`: a minimal durable
gateway, see below), the baselines, the load generator and the benchmark itself. The daemon logs
at `info` (JSON lines to a file). Each target is a ratio to a floor run in the same benchmark,
alternately with pipecored; the floor is printed beside each figure.

## Results

{markdown_table(results.rows)}
"""
    notes = "\n".join(f"- {n}" for n in results.notes)
    method = Path(__file__).with_name("METHOD.md").read_text(encoding="utf-8")
    return f"{header}\n{notes}\n\n{method}\n## Profiles\n\n{markdown_profiles(results.profiles)}\n"
