#!/usr/bin/env bash
# Install interpret and its dependencies into the current Python (3.11+).
# Without a GPU, the CPU build of torch goes in first: an unpinned torch pulls GBs of CUDA wheels.
# With --test, also the test extras and headless Chromium + chromedriver (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    pip_install torch
  else
    pip_install torch==2.13.0
  fi
fi

if [ "${1:-}" = "--test" ]; then
  pip_install -e ".[test]"
  pip_install --no-deps mediapipe==0.10.14 absl-py flatbuffers "protobuf>=4.25.3,<5" attrs sounddevice \
    || echo "setup: MediaPipe 0.10.14 has no wheel for this Python; the landmark tests will be skipped" >&2  # interpret[landmarks] without opencv-contrib / jax
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
else
  pip_install -e .
fi
