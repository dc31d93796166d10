#!/usr/bin/env bash
# Install everything the tests need into the virtual environment, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(bash scripts/setup.sh --test | tail -n 1)
exec "$PY" -m pytest "$@"
