"""Running a benchmark module from the checkout, as a user does, for the tests that check it
runs (never how fast)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bench...`` with ``args``, this tree first on the path and no test settings
    leaking into the daemons it starts; fails the test, with the output's tail, unless it
    exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPECORE", "PYTEST"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done
