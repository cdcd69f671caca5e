"""The benchmark's smoke mode runs end to end and prints numbers (how fast is never checked)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_smoke_runs_and_reports_numbers(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    doc = tmp_path / "PERFORMANCE.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPECORE", "PYTEST"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out), "--output", str(doc)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "results (" in done.stdout

    results = json.loads(out.read_text())
    metrics = {row["metric"]: row for row in results["rows"]}
    sections = {row["section"] for row in results["rows"]}
    assert sections == {"1 accept", "2 delivery", "3 tenants", "4 reads"}

    def number(prefix: str) -> float:
        row = next(r for name, r in metrics.items() if name.startswith(prefix))
        value = row["value"]
        assert isinstance(value, int | float) and math.isfinite(value), row
        return float(value)

    # present and measured; the speed itself is never asserted
    assert number("sends/s at") > 0
    assert number("sends/s at 8 connections, deliveries held") > 0
    assert number("sends/s at 8 connections, bare endpoint + store") > 0
    assert number("latency p99") > 0
    assert number("non-2xx") >= 0
    assert number("delivered/s end to end") > 0
    assert number("startup to /readyz") > 0
    assert number("RSS after start") > 0
    assert number("tenant edit live") > 0
    assert number("GET /messaging/logs/") > 0
    assert number("GET /messaging/stats/") > 0
    for row in results["rows"]:
        if row["baseline_name"] and row["unit"]:  # a count of errors may well be 0
            assert row["baseline"] is None or row["baseline"] > 0, row

    text = doc.read_text()
    assert "| phase | measurement |" in text
    assert f"{os.cpu_count()} CPUs" in text
