#!/usr/bin/env bash
# Install, then run the whole pipeline on the embedded synthetic default; prints the report path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m interpret demo "$@"
