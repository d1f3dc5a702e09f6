#!/usr/bin/env bash
# The GPU benchmarks in one prepared run for a lent device machine (one NVIDIA H200, 16 CPU cores): the model speeds
# and the probe stage against the kit's protocol, each step under `timeout`, all of them within BUDGET_S seconds
# (default 500; estimated 4-6 minutes, not yet measured), so that ~15 minutes of device time leave room for a rerun.
#
# Run from the repository root:
#   bash benchmarks/device_check.sh                         # device tool: run(command=..., timeout_s=600)
#   PYTHON=/path/to/python OUT=/tmp/out bash benchmarks/device_check.sh
# Interpreter: $PYTHON if set, else ./.venv/bin/python if its torch sees a GPU, else python3 if its torch does (the
# device image's python3 holds a CUDA torch; scripts/install.sh installs the CPU build, so its .venv is passed
# over). Nothing is installed: the repository root goes on PYTHONPATH.
# Needs torch with CUDA, numpy, scipy and scikit-learn for every step, and sed_eval (the kit's event scoring) for
# the event step. The device image lacks sed_eval: carry it as wheels in ./.whl (or $WHEELS), prepared here with
#   echo /.whl/ >> .git/info/exclude
#   python -m pip wheel --no-deps -w .whl sed_eval==0.2.1 dcase_util==0.2.20
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     librosa==0.11.0 soundfile==0.14.0 cffi==2.1.1 future==1.0.0 validators==0.36.0 setuptools==80.10.2
# and name .whl in the run's carry: they are installed into /tmp/site first (setuptools < 81 for dcase_util's
# pkg_resources). Without sed_eval the event step is skipped and recorded; the other steps run.
# Output, all under $OUT (the device tool brings back at most 8 files): bench_models_<gpu>.{json,md},
# bench_probes_<gpu>.{json,md} (one report, a row per probe problem) and device_check.log.
# Exit status: 0 when every step passed; 1 when one failed, timed out or was skipped (the summary says which);
# 2 when no interpreter has what every step needs.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-$(mktemp -d)}
BUDGET_S=${BUDGET_S:-500}
WHEELS=${WHEELS:-.whl}
LOG="$OUT/device_check.log"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
: >"$LOG"
failures=()

log() { printf '%s\n' "$*" | tee -a "$LOG"; }
log "== output and log in $OUT"

# step NAME CAP_S COMMAND...: COMMAND under timeout (CAP_S or what is left of BUDGET_S), output logged; a failure,
# a timeout or a skip is recorded and the script goes on
step() {
  local name=$1 cap=$2 rc=0 start=$SECONDS
  shift 2
  local left=$((BUDGET_S - SECONDS))
  local limit=$((cap < left ? cap : left))
  if ((limit < 30)); then
    failures+=("$name: skipped, ${left} s of the budget left")
    log "== $name: skipped, ${left} s of the budget left"
    return
  fi
  log "== $name (limit ${limit} s): $*"
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$LOG" || rc=${PIPESTATUS[0]}
  if ((rc == 124 || rc == 137)); then
    failures+=("$name: timed out after ${limit} s")
  elif ((rc != 0)); then
    failures+=("$name: exit status $rc")
  fi
  log "== $name: exit status $rc after $((SECONDS - start)) s"
}

has_cuda() { "$1" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' >/dev/null 2>&1; }
if [[ -n ${PYTHON:-} ]]; then
  PY=$PYTHON
elif [[ -x .venv/bin/python ]] && has_cuda .venv/bin/python; then
  PY=.venv/bin/python
elif has_cuda python3; then
  PY=python3
else
  log "no interpreter with a CUDA torch: neither ./.venv/bin/python nor python3; set PYTHON=/path/to/python"
  exit 2
fi

SITE=""
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl 2>&1 | tee -a "$LOG"; then
    SITE=/tmp/site
  else
    log "warning: the wheels in $WHEELS did not install; going on without them"
  fi
fi
export PYTHONPATH="$PWD${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"

log "== environment: $PY, OUT=$OUT, budget ${BUDGET_S} s"
step nvidia-smi 30 nvidia-smi
deps=0
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG" || deps=${PIPESTATUS[0]}
"""Versions, the GPU, and the modules the steps import: exit 2 if a step-wide need is missing, 3 if only sed_eval."""
import importlib
import platform
import sys

missing = []
for name in ("torch", "numpy", "scipy", "sklearn", "sed_eval"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '')}")
    except Exception as error:  # a dependency failing to import counts as missing too
        missing.append(name)
        print(f"{name}: MISSING ({type(error).__name__}: {error})")
print(f"python {platform.python_version()} at {sys.executable}")
cuda = False
if "torch" not in missing:
    import torch

    cuda = torch.cuda.is_available()
    print(f"torch CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, GPU available: {cuda}")
    if cuda:
        print(f"GPU {torch.cuda.get_device_name()}, capability {torch.cuda.get_device_capability()}; TF32 for "
              f"matmuls {torch.backends.cuda.matmul.allow_tf32}, for cuDNN {torch.backends.cudnn.allow_tf32}")
if set(missing) - {"sed_eval"} or not cuda:
    print("stopping: every step needs torch with CUDA, numpy, scipy and scikit-learn (see the top of this script)")
    sys.exit(2)
sys.exit(3 if missing else 0)
EOF
case $deps in
  0) ;;
  3) log "sed_eval is missing: the event step will be skipped (carry the wheels listed at the top of this script)" ;;
  *) log "stopping (exit status $deps of the environment check)"; exit 2 ;;
esac

GPU=$("$PY" -c 'import re, torch; print(re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name().lower()).strip("_"))')
PROBES=("$PY" benchmarks/bench_probes.py --device cuda --out "$OUT" --name "bench_probes_$GPU")

# Models: batch 32 x 10 s clips (320 s of audio a call keeps the GPU busy), best of 3 calls, random base weights.
step bench_models 150 "$PY" benchmarks/bench_models.py --device cuda --models atst_frame atst_clip atst_c2f asit mel \
  --batch 32 --seconds 10 --repeats 3 --threads "$(nproc)" --out "$OUT/bench_models_$GPU"
# Probes, all rows in one report. The CPU caps are lifted: the reference's DCASE epoch is timed on every training
# row (--reference-fraction 1: 8 grid points x 129 batches take seconds on the GPU), and the scene grids run the
# kit's full schedule (--max-epochs 500, the grid's maximum; early stopping ends runs sooner: two 768-d grid points
# run on a CPU peaked at epochs 95 and 200, so stopped at ~155 and ~260). What is left is mostly the reference's
# validation scoring on the CPU (four scores every 3 epochs, ~0.1 s each, ~1 min a grid); a grid that never stops
# early is cut by its step's limit.
if ((deps == 3)); then
  failures+=("event_components: skipped, sed_eval missing")
  log "== event_components: skipped, sed_eval missing"
else
  step event_components 150 "${PROBES[@]}" --only event_components --reference-fraction 1
fi
step scene768 240 "${PROBES[@]}" --only scene768 --max-epochs 500
step scene9216 240 "${PROBES[@]}" --only scene9216 --max-epochs 500

log "== summary after ${SECONDS} s: ${#failures[@]} step(s) failed or skipped"
for failure in ${failures[@]+"${failures[@]}"}; do
  log "  $failure"
done
exit $((${#failures[@]} ? 1 : 0))
