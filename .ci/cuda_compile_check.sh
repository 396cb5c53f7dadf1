#!/usr/bin/env bash
# Compile-only check of clarena's CUDA kernels (no GPU needed), run from the repository root.
#
#  1. a venv with the CUDA build of torch (created and filled on first use),
#  2. a build of clarena._C with FORCE_CUDA=1 in a temporary copy of the sources (never in the
#     working tree, whose CPU build others are using),
#  3. an import of that build on CPU, asserting every op has a CUDA kernel registered,
#  4. the ops' CPU tests against the CUDA-built library (torch 2.14 here, 2.13 in the main run).
#
# Environment:
#   CUDA_VENV              venv to use or create (default /tmp/clarena-cuda-venv)
#   CUDA_HOME              CUDA toolkit (default /usr/local/cuda-13.0 when it exists)
#   TORCH_CUDA_ARCH_LIST   CUDA targets (default "8.0;9.0")
#   MAX_JOBS               parallel compile jobs (default 2)
#   NVCC_FLAGS             extra nvcc flags, passed through to setup.py
#   KEEP_BUILD=1           keep the temporary build directory (its path is printed)
# Exits non-zero on any failure.
set -euo pipefail

ROOT="$(pwd)"
if [[ ! -f "$ROOT/setup.py" || ! -d "$ROOT/csrc" ]]; then
  echo "cuda_compile_check: run from the repository root (no setup.py or csrc/ in $ROOT)" >&2
  exit 2
fi

VENV="${CUDA_VENV:-/tmp/clarena-cuda-venv}"
PY="$VENV/bin/python"
OPS=(percentile_mask parameter_measure scale_grad_by_measure_ masked_weight masked_weight_backward
     unit_mask unit_mask_backward)
TESTS=(tests/test_percentile_mask.py tests/test_parameter_measure.py tests/test_masked_weight.py
       tests/test_unit_mask.py tests/test_op_properties.py tests/test_native.py)

step() { printf '\n== %s\n' "$*"; }

# --- 1. venv ---------------------------------------------------------------------------------
step "venv $VENV"
if [[ ! -x "$PY" ]]; then
  python3 -m venv "$VENV"
  "$PY" -m pip install --upgrade pip
  # torch 2.14.1 is the CUDA 13.0 build here (from local disk, about 80 s).
  "$PY" -m pip install torch==2.14.1 setuptools wheel ninja pytest numpy hypothesis
fi
"$PY" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}")
if torch.version.cuda is None:
    raise SystemExit("cuda_compile_check: this venv's torch is a CPU build; the check needs a CUDA build "
                     "(pip install torch==2.14.1)")
EOF

# --- 2. build in a copy of the sources -------------------------------------------------------
BUILD="$(mktemp -d "${TMPDIR:-/tmp}/clarena-cuda-build.XXXXXX")"
cleanup() {
  if [[ "${KEEP_BUILD:-0}" == "1" ]]; then
    echo "cuda_compile_check: build kept in $BUILD"
  else
    rm -rf "$BUILD"
  fi
}
trap cleanup EXIT

step "copy sources to $BUILD"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked and untracked-but-not-ignored files; never a build tree or a built library.
  git -C "$ROOT" ls-files -co --exclude-standard -z \
    | grep -zv -e '^build/' -e '\.so$' \
    | tar -C "$ROOT" --null -cf - -T - \
    | tar -C "$BUILD" -xf -
else
  tar -C "$ROOT" --exclude=./build --exclude='*.so' --exclude=.git --exclude='__pycache__' -cf - . \
    | tar -C "$BUILD" -xf -
fi

if [[ -z "${CUDA_HOME:-}" && -d /usr/local/cuda-13.0 ]]; then
  export CUDA_HOME=/usr/local/cuda-13.0
fi
export FORCE_CUDA=1
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}"
export MAX_JOBS="${MAX_JOBS:-2}"
step "build (CUDA_HOME=${CUDA_HOME:-unset}, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, MAX_JOBS=$MAX_JOBS)"
start=$SECONDS
(cd "$BUILD" && "$PY" setup.py build_ext --inplace)
echo "cuda_compile_check: build took $((SECONDS - start)) s"

# --- 3. import on CPU; every op has a CUDA kernel --------------------------------------------
step "CUDA kernels registered"
(cd "$BUILD" && PYTHONPATH="$BUILD" "$PY" - "${OPS[@]}" <<'EOF'
import os
import sys
import warnings

import torch

warnings.simplefilter("error", RuntimeWarning)  # clarena warns (not fails) when _C does not load
import clarena_backbones as clarena  # noqa: E402

here = os.path.realpath(os.getcwd())
if not os.path.realpath(clarena.__file__).startswith(here + os.sep):
    raise SystemExit(f"cuda_compile_check: imported clarena from {clarena.__file__}, not from {here}")
missing = []
for op in sys.argv[1:]:
    name = f"clarena::{op}"
    has_cuda = torch._C._dispatch_has_kernel_for_dispatch_key(name, "CUDA")
    has_cpu = torch._C._dispatch_has_kernel_for_dispatch_key(name, "CPU")
    print(f"  {name:34s} CUDA {'yes' if has_cuda else 'NO'}   CPU {'yes' if has_cpu else 'NO'}")
    if not (has_cuda and has_cpu):
        missing.append(name)
if missing:
    raise SystemExit(f"cuda_compile_check: kernels missing for {', '.join(missing)}")
print(f"cuda_compile_check: all {len(sys.argv) - 1} ops have CPU and CUDA kernels")
EOF
)

# --- 4. the ops' CPU tests against the CUDA-built library ------------------------------------
step "tests: ${TESTS[*]}"
(cd "$BUILD" && PYTHONPATH="$BUILD" "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}")

step "cuda_compile_check: OK"
