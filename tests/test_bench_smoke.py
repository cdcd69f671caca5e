"""The benchmark's smoke mode runs end to end and prints numbers (how fast is never checked)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from tests.bench_run import run_bench
from tests.pg import admin_dsn


def _smoke(tmp_path: Path, *args: str) -> tuple[dict[str, Any], Path]:
    out = tmp_path / "results.json"
    doc = tmp_path / "PERFORMANCE.md"
    done = run_bench("bench", "--smoke", "--json", str(out), "--output", str(doc), *args)
    assert "results (" in done.stdout
    return json.loads(out.read_text()), doc


def _number(rows: list[dict[str, Any]], prefix: str) -> float:
    row = next((r for r in rows if r["metric"].startswith(prefix)), None)
    assert row is not None, f"no row {prefix!r} in {[r['metric'] for r in rows]}"
    value = row["value"]
    assert isinstance(value, int | float) and math.isfinite(value), row
    return float(value)


def _baselines_measured(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if row["baseline_name"] and row["unit"]:  # a count of errors may well be 0
            assert row["baseline"] is not None and row["baseline"] > 0, row


def test_bench_smoke_runs_and_reports_numbers(tmp_path: Path) -> None:
    results, doc = _smoke(tmp_path, "--postgres", "off")
    rows = results["rows"]
    sections = {row["section"] for row in rows}
    assert sections == {"1 accept", "2 sustained", "3 delivery", "5 tenants", "6 reads"}

    # present and measured, each beside its floor; the speed itself is never asserted
    assert _number(rows, "sends/s at 8 connections, deliveries held") > 0
    assert _number(rows, "latency p99, deliveries held") > 0
    assert _number(rows, "CPU per accepted message") > 0
    assert _number(rows, "non-2xx") >= 0
    assert _number(rows, "sends/s at 8 connections, bare Starlette") > 0
    assert _number(rows, "sends/s at 8 connections, bare + pipecored's store") > 0
    assert _number(rows, "delivered/s end to end, sends for") > 0
    assert _number(rows, "CPU per message end to end") > 0
    assert _number(rows, "delivered/s end to end (") > 0
    assert _number(rows, "CPU per message delivered") > 0
    assert _number(rows, "startup to /readyz") > 0
    assert _number(rows, "RSS after start") > 0
    assert _number(rows, "tenant edit live") > 0
    assert _number(rows, "GET /messaging/logs/") > 0
    assert _number(rows, "GET /messaging/stats/") > 0
    assert _number(rows, "GET /console/ (tenants)") > 0
    assert _number(rows, "GET /console/tenants/{t}/log") > 0
    _baselines_measured(rows)

    text = doc.read_text()
    assert "| phase | measurement |" in text
    assert f"{os.cpu_count()} CPUs" in text


def test_bench_smoke_postgres_rows(tmp_path: Path) -> None:
    """The PostgreSQL rows (one node and two over one database) on the machine's server; skipped
    without one, a failure where PIPECORED_TEST_REQUIRE names postgres (CI)."""
    dsn = admin_dsn()
    results, _ = _smoke(tmp_path, "--only", "postgres", "--postgres", dsn)
    rows = results["rows"]
    assert {row["section"] for row in rows} == {"4 postgres"}
    for nodes in ("1 node", "2 nodes"):
        assert _number(rows, f"sends/s at 8 connections, deliveries held, {nodes}") > 0
        assert _number(rows, f"delivered/s end to end, sends for 1 s, {nodes}") > 0
        assert _number(rows, f"CPU per message end to end, {nodes}") > 0
    _baselines_measured(rows)
