"""``python -m bench.parts`` takes each part out of a running gateway and proves it did: every
variant runs (its patches still name real code), and the check refuses a variant whose part
was not taken out or whose kept parts did not run. How fast is never checked."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from bench.parts import MODES, _check
from tests.bench_run import run_bench


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_variant_runs_and_reports_cpu(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "parts.json"
    sizes = ["--sends", "96", "--warm", "32", "--rounds", "1"]
    done = run_bench("bench.parts", mode, *sizes, "--json", str(out))
    results = json.loads(out.read_text(encoding="utf-8"))
    assert set(results) == set(MODES[mode])
    for variant, runs in results.items():
        (run,) = runs
        assert run["measured"] == 96, variant
        assert math.isfinite(run["cpu_us"]) and run["cpu_us"] > 0, variant
        parts = MODES[mode][variant]
        if parts is not None:  # pipecored's: its write transactions counted, none without a store
            assert run["commits_per_message"] >= 0, variant
            assert run["commits_per_message"] > 0 or "store" in parts, variant
    assert "| pipecored |" in done.stdout


def _db(path: Path, *, attempts: int, events: int, sent: int) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE attempts (id INTEGER)")
        conn.execute("CREATE TABLE outbox_events (id INTEGER)")
        conn.execute("CREATE TABLE messages (status TEXT)")
        conn.executemany("INSERT INTO attempts VALUES (?)", [(i,) for i in range(attempts)])
        conn.executemany("INSERT INTO outbox_events VALUES (?)", [(i,) for i in range(events)])
        conn.executemany("INSERT INTO messages VALUES ('sent')", [() for _ in range(sent)])
    conn.close()
    return path


FULL = {"http.request": 10, "stored": 10, "delivery.attempt": 10}


@pytest.mark.parametrize(
    ("parts", "done", "attempts", "events", "refused"),
    [
        (set(), FULL, 10, 10, None),
        (set(), {**FULL, "http.request": 9}, 10, 10, "9 http.request"),
        (set(), {**FULL, "delivery.attempt": 0}, 10, 10, "0 delivery.attempt"),
        (set(), FULL, 10, 9, "9 events for 10 messages"),
        ({"log"}, {**FULL, "http.request": 0}, 10, 10, None),
        ({"log"}, FULL, 10, 10, "10 http.request, expected none"),
        ({"logs"}, {"stored": 10}, 10, 10, None),
        ({"logs"}, {"stored": 10, "delivery.attempt": 1}, 10, 10, "1 delivery.attempt"),
        ({"store"}, {"http.request": 10}, 0, 0, None),
        ({"store"}, {**FULL, "stored": 1}, 0, 0, "1 stored, expected none"),
        ({"events"}, FULL, 10, 0, None),
        ({"events"}, FULL, 10, 3, "3 events stored"),
    ],
)
def test_the_check_refuses_a_part_left_in_or_a_kept_part_that_did_not_run(
    tmp_path: Path,
    parts: set[str],
    done: dict[str, int],
    attempts: int,
    events: int,
    refused: str | None,
) -> None:
    db = _db(tmp_path / "p.db", attempts=attempts, events=events, sent=attempts)
    if refused is None:
        _check("v", frozenset(parts), done, db, 10)
    else:
        with pytest.raises(RuntimeError, match=refused):
            _check("v", frozenset(parts), done, db, 10)
