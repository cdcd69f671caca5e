#!/usr/bin/env bash
# Install pipecored with its test dependencies into .venv and run everything CI runs:
# lint (ruff), types (mypy), then the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[test]'
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"
# The suite runs in a new random order each time (no test may depend on another's order); the
# seed is printed so that a failure can be replayed: TEST_SEED=1234 ./scripts/test.sh
SEED=${TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "test order seed: $SEED (replay with TEST_SEED=$SEED ./scripts/test.sh)"
# pytest exits 5 when it collected nothing: that is a failure here, like any non-zero code.
"$VENV/bin/python" -m pytest -p random_order --random-order-bucket=global \
  --random-order-seed="$SEED" "$@"
