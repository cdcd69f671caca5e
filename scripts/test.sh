#!/usr/bin/env bash
# Install pipecored with its test dependencies into a virtualenv of its own (.venv-test) and
# run everything CI runs: lint (ruff), types (mypy), then the whole pytest suite.
#
# Its own venv, not the quick start's .venv: plugins a user installed there, or a
# non-editable install of an older checkout, must not change what the tests see. Either
# command may run first on the same clone.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-test}

# The monitoring tests run real Prometheus (promtool) and Alertmanager, from Debian's packages;
# the console's browser test drives Debian's Chromium (Playwright's own download is never used).
if ! command -v promtool >/dev/null || ! command -v prometheus-alertmanager >/dev/null \
    || ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's prometheus, prometheus-alertmanager and chromium for the tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager \
      chromium >/dev/null
    # the packages start their own services; the tests run their own instances
    systemctl stop prometheus prometheus-alertmanager 2>/dev/null || true
  elif ! command -v promtool >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then
    echo "the tests need promtool and prometheus-alertmanager on PATH: as root, run" >&2
    echo "  apt-get install prometheus prometheus-alertmanager chromium   (Debian, Ubuntu)" >&2
    exit 1
  else
    echo "no chromium on PATH: the console's browser test will skip (apt-get install chromium)"
  fi
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[test]'
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"
# The suite runs in a new random order each time: the modules in a random order, and each one's
# tests shuffled (no test may depend on another's order). Shuffling across modules too
# (--random-order-bucket=global as an argument) also passes, but sets up every module-wide
# fixture (a daemon, a fuzzing run) again each time the order comes back to it: minutes more.
# The seed is printed so that a failure can be replayed: TEST_SEED=1234 ./scripts/test.sh
SEED=${TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "test order seed: $SEED (replay: TEST_SEED=$SEED ./scripts/test.sh)"
# pytest exits 5 when it collected nothing: that is a failure here, like any non-zero code.
"$VENV/bin/python" -m pytest -p random_order --random-order-bucket=module \
  --random-order-seed="$SEED" "$@"
