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
# pytest exits 5 when it collected nothing: that is a failure here, like any non-zero code.
"$VENV/bin/python" -m pytest "$@"
