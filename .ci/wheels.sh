#!/usr/bin/env bash
# The wheels, built once and tested across torch versions (no GPU needed), from the repository root:
#
#  1. two venvs: torch 2.13.0 (CPU build) and torch 2.14.1 (CUDA 13.0 build), created on first use;
#  2. the CPU wheel built against torch 2.13 and the CUDA 13.0 wheel against torch 2.14, each in
#     its own copy of the sources (never in the working tree);
#  3. the CPU wheel installed into the torch 2.14 venv and the CUDA wheel into the torch 2.13 venv
#     (so each runs on the torch it was not built with), the op tests run against each install;
#  4. the CUDA wheel installed into the torch 2.14 venv: clarena_backbones._C_cuda loads and every op that
#     has a CPU kernel has a CUDA kernel (the op list is read from the registrations).
#
# Environment:
#   WHEEL_VENVS            folder for the two venvs (default /tmp/clarena-wheel-venvs)
#   WHEEL_DIR              where the wheels go (default ./dist)
#   TORCH_CUDA_ARCH_LIST   CUDA targets (default setup.py's "8.0;9.0+PTX")
#   MAX_JOBS               parallel compile jobs (default 2)
#   CUDA_HOME              CUDA toolkit (default: asked from nvcc, as setup.py does)
# Exits non-zero on any failure.
set -euo pipefail

source "$(dirname "$0")/common.sh"
require_repository_root
ROOT="$(pwd)"
VENVS="${WHEEL_VENVS:-/tmp/clarena-wheel-venvs}"
DIST="$(mkdir -p "${WHEEL_DIR:-$ROOT/dist}" && cd "${WHEEL_DIR:-$ROOT/dist}" && pwd)"
OP_TESTS=(ops test_stable_abi.py)  # tests/ops holds every op's tests
export MAX_JOBS="${MAX_JOBS:-2}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/clarena-wheels.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n== %s\n' "$*"; }

make_venv() {  # name, torch requirement
  local venv="$VENVS/$1"
  if ! "$venv/bin/python" -c "import torch, pytest, hypothesis, numpy, ninja, wheel" 2>/dev/null; then
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "$2" setuptools wheel ninja numpy pytest hypothesis
  fi
  "$venv/bin/python" -c "import torch; print(f'$1: torch {torch.__version__}, CUDA {torch.version.cuda}')" >&2
  echo "$venv/bin/python"
}

build_wheel() {  # python, source copy, switch (FORCE_ONLY_CPU or FORCE_CUDA)
  local start=$SECONDS
  (cd "$2" && env "$3=1" "$1" -m pip wheel --quiet --no-build-isolation --no-deps -w "$WORK/wheels" . >&2)
  echo "wheels: $3 build took $((SECONDS - start)) s" >&2
}

# Runs the op tests against the clarena installed in a venv, from a folder where `import clarena`
# cannot find the source tree.
test_install() {  # python, label
  local dir="$WORK/tests-$2"
  mkdir -p "$dir" && cp -r "$ROOT/tests" "$dir/"
  (cd "$dir" && "$1" - <<'PY'
import os, sys, warnings
warnings.simplefilter("error", RuntimeWarning)  # a library that should load but does not
import clarena
from clarena import ops
if "site-packages" not in clarena.__file__:
    sys.exit(f"wheels: imported clarena from {clarena.__file__}, not from the installed wheel")
if not ops.native_available():
    sys.exit("wheels: the installed native library did not load")
print(f"wheels: clarena {clarena.__version__} from {os.path.dirname(clarena.__file__)}")
PY
  )
  (cd "$dir" && "$1" -m pytest -q -p no:cacheprovider "${OP_TESTS[@]/#/tests/}")
}

step "venvs in $VENVS"
PY13="$(make_venv torch-2.13.0 torch==2.13.0)"
PY14="$(make_venv torch-2.14.1 torch==2.14.1)"

step "CPU wheel, built against torch 2.13"
copy_sources "$ROOT" "$WORK/cpu"
build_wheel "$PY13" "$WORK/cpu" FORCE_ONLY_CPU
step "CUDA wheel, built against torch 2.14 (CUDA 13.0)"
copy_sources "$ROOT" "$WORK/cuda"
build_wheel "$PY14" "$WORK/cuda" FORCE_CUDA
CPU_WHEEL="$(ls "$WORK"/wheels/*+cpu-*.whl)"
CUDA_WHEEL="$(ls "$WORK"/wheels/*+cu1*-*.whl)"
ls -l "$WORK"/wheels/
"$PY14" - "$CPU_WHEEL" "$CUDA_WHEEL" <<'PY'
import sys, zipfile
cpu, cuda = (sorted(n for n in zipfile.ZipFile(path).namelist() if n.endswith(".so")) for path in sys.argv[1:])
print("CPU wheel: ", cpu, "\nCUDA wheel:", cuda)
if cpu != ["clarena_backbones/_C.abi3.so"] or cuda != ["clarena_backbones/_C.abi3.so", "clarena_backbones/_C_cuda.abi3.so"]:
    sys.exit("wheels: the CPU wheel must hold clarena_backbones._C only, the CUDA wheel clarena_backbones._C and clarena_backbones._C_cuda")
PY

step "CPU wheel (built on torch 2.13) on torch 2.14"
"$PY14" -m pip install --quiet --force-reinstall --no-deps "$CPU_WHEEL"
test_install "$PY14" cpu-on-2.14

step "CUDA wheel (built on torch 2.14) on torch 2.13, a CPU build: clarena_backbones._C only"
"$PY13" -m pip install --quiet --force-reinstall --no-deps "$CUDA_WHEEL"
test_install "$PY13" cuda-on-2.13

step "CUDA wheel on torch 2.14: every op has its CUDA kernel"
"$PY14" -m pip install --quiet --force-reinstall --no-deps "$CUDA_WHEEL"
(cd "$WORK" && "$PY14" "$ROOT/.ci/check_cuda_kernels.py")

cp "$CPU_WHEEL" "$CUDA_WHEEL" "$DIST/"
step "wheels: OK ($(cd "$DIST" && ls ./*.whl | tr '\n' ' '))"
