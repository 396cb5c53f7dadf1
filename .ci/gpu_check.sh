#!/usr/bin/env bash
# One command for the first machine with a GPU, from the repository root (about 10 minutes on an
# H100; needs network access for torch on first use):
#
#  1. refuses, and exits 3, unless nvidia-smi lists a GPU and torch can use it;
#  2. builds clarena for the local GPU architecture only (a copy of the sources, never the tree);
#  3. runs every test with the GPU visible: tests/test_cuda_backbones.py (every backbone class in
#     every stage against its CPU result, opcheck of every op, CUDA-graph capture of the gate and of
#     a HAT and a WSN training step, torch.compile) and every needs_cuda case of the op tests;
#  4. runs the benchmark groups on the GPU (benchmarks/cuda_report.py: times, ratios, bandwidth);
#  5. writes one report, gpu_check_report.md (GPU, torch, times, test summary, benchmark table).
#
#   bash .ci/gpu_check.sh --list   prints the test and benchmark selection (no GPU needed)
#
# Environment:
#   GPU_CHECK_PYTHON   a python whose torch is a CUDA build (default: a venv created in
#                      /tmp/clarena-gpu-venv with torch 2.14.1, the CUDA 13.0 build)
#   GPU_CHECK_REPORT   report path (default ./gpu_check_report.md)
#   MAX_JOBS           parallel compile jobs (default: the number of cores)
set -euo pipefail

source "$(dirname "$0")/common.sh"
require_repository_root
ROOT="$(pwd)"
REPORT="${GPU_CHECK_REPORT:-$ROOT/gpu_check_report.md}"
BENCH_ROUNDS=20

if [[ "${1:-}" == "--list" ]]; then
  PY="${GPU_CHECK_PYTHON:-python3}"
  echo "== tests (all of tests/; these need CUDA and skip without it):"
  (cd "$ROOT" && "$PY" -m pytest --collect-only -q -m needs_cuda -p no:cacheprovider tests | grep '::')
  echo "== benchmark workloads (group | impl), $BENCH_ROUNDS rounds each:"
  (cd "$ROOT/benchmarks" && PYTHONPATH="$ROOT" "$PY" cuda_report.py --list)
  exit 0
fi

# --- 1. a GPU, or a clear refusal -------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "gpu_check: refused: no NVIDIA GPU on this machine (nvidia-smi is missing or lists no GPU)." >&2
  echo "gpu_check: run it on a machine with a GPU; 'bash .ci/gpu_check.sh --list' shows what it would run." >&2
  exit 3
fi
nvidia-smi -L

if [[ -n "${GPU_CHECK_PYTHON:-}" ]]; then
  PY="$GPU_CHECK_PYTHON"
else
  VENV=/tmp/clarena-gpu-venv
  if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet torch==2.14.1 setuptools wheel ninja numpy pytest pytest-benchmark \
      hypothesis hydra-core scikit-learn matplotlib tqdm
  fi
  PY="$VENV/bin/python"
fi
ARCH="$("$PY" - <<'PY'
import sys
import torch
if torch.version.cuda is None or not torch.cuda.is_available():
    sys.exit(f"gpu_check: refused: torch {torch.__version__} cannot use the GPU (CUDA build: {torch.version.cuda})")
major, minor = torch.cuda.get_device_capability()
print(f"{major}.{minor}")
PY
)"

# --- 2. build for the local architecture -------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/clarena-gpu-check.XXXXXX")"
copy_sources "$ROOT" "$WORK"
start=$SECONDS
(cd "$WORK" && FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
  "$PY" setup.py build_ext --inplace > build.log 2>&1) || { tail -30 "$WORK/build.log"; exit 1; }
BUILD_SECONDS=$((SECONDS - start))

# --- 3. every test, on a machine where CUDA tests run -------------------------------------------
start=$SECONDS
set +e
(cd "$WORK" && "$PY" -m pytest -q -p no:cacheprovider -rs --junitxml=junit.xml tests > tests.log 2>&1)
TEST_STATUS=$?
set -e
TEST_SECONDS=$((SECONDS - start))

# --- 4. benchmarks ------------------------------------------------------------------------------
start=$SECONDS
(cd "$WORK/benchmarks" && PYTHONPATH="$WORK" "$PY" cuda_report.py --rounds "$BENCH_ROUNDS" --output "$WORK/bench.md" \
  --json "$WORK/bench.json" 2> "$WORK/bench.log")
BENCH_SECONDS=$((SECONDS - start))

# --- 5. the report --------------------------------------------------------------------------------
{
  echo "# clarena GPU check"
  echo
  echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
  "$PY" -c "import torch; print(f'- torch {torch.__version__}, CUDA {torch.version.cuda}, built for sm_${ARCH/./}')"
  echo "- build ${BUILD_SECONDS} s, tests ${TEST_SECONDS} s, benchmarks ${BENCH_SECONDS} s"
  echo
  echo "## Tests (exit status $TEST_STATUS)"
  echo
  echo '```'
  tail -n 40 "$WORK/tests.log"
  echo '```'
  echo
  echo "## Benchmarks"
  echo
  cat "$WORK/bench.md"
} > "$REPORT"
echo "gpu_check: report in $REPORT (build and test logs, benchmark JSON in $WORK)"
exit "$TEST_STATUS"
