#!/usr/bin/env bash
# Install into the virtual environment, then run the whole pipeline on the embedded synthetic
# default; prints the report's absolute path. `bash scripts/demo.sh --quick` for a first look.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(bash scripts/setup.sh | tail -n 1)
exec "$PY" -m interpret demo "$@"
