#!/usr/bin/env bash
# The release files, built, checked and tested across torch versions (no GPU needed), from the
# repository root:
#
#   bash .ci/wheels.sh [build] [test]     (both when none is named)
#
# build  1. docs/wheels.md's wheel command (the block after <!-- wheel-command -->), run as written
#           in a venv with torch 2.14.1 (the CUDA 13.0 build), in a copy of the sources (never the
#           working tree): one wheel with the CPU and the CUDA 13 kernels, repaired by auditwheel;
#        2. the source distribution, from the same copy;
#        3. the wheel's name, tags and files, then abi3audit --strict, twine check --strict and
#           check-wheel-contents; the files go to dist/.
# test   the wheel in dist/ installed into a torch 2.13.0 venv (a CPU build: _C alone loads) and a
#        torch 2.14.1 venv (CUDA 13.0: _C_cuda loads too, and every op with a CPU kernel has a CUDA
#        kernel), the op tests run against each install.
#
# Environment:
#   WHEEL_VENVS            folder for the venvs, created on first use (default /tmp/clarena-wheel-venvs)
#   WHEEL_DIR              where the release files go (default ./dist)
#   TORCH_CPU_INDEX        an extra index with torch's CPU builds, for the torch 2.13.0 venv (where
#                          the default index's torch 2.13.0 is a CUDA build)
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
PHASES=("$@")
[[ ${#PHASES[@]} -gt 0 ]] || PHASES=(build test)

step() { printf '\n== %s\n' "$*"; }

make_venv() {  # name, pip arguments for what the venv needs besides the test tools
  local venv="$VENVS/$1"
  if ! "$venv/bin/python" -c "import torch, pytest, hypothesis, numpy" 2>/dev/null; then
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "${@:2}" numpy pytest hypothesis
  fi
  "$venv/bin/python" -c "import torch; print(f'$1: torch {torch.__version__}, CUDA {torch.version.cuda}')" >&2
  echo "$venv"
}

build() {
  local venv wheel_command
  venv="$(make_venv torch-2.14.1 torch==2.14.1)"
  "$venv/bin/python" -m pip install --quiet build abi3audit twine check-wheel-contents
  wheel_command="$(documented_command docs/wheels.md wheel-command)"
  copy_sources "$ROOT" "$WORK/src"

  step "the wheel command of docs/wheels.md, in a copy of the sources"
  echo "+ ${wheel_command}"
  local start=$SECONDS
  (cd "$WORK/src" && source "$venv/bin/activate" && bash -euo pipefail -c "$wheel_command")
  echo "wheels: the wheel command took $((SECONDS - start)) s"

  step "the wheel: name, tags, files"
  "$venv/bin/python" - "$WORK/src/dist" <<'PY'
import pathlib, re, sys, zipfile
dist = pathlib.Path(sys.argv[1])
wheels = sorted(dist.iterdir())
if len(wheels) != 1 or wheels[0].suffix != ".whl":
    sys.exit(f"wheels: dist/ must hold exactly one wheel, holds {[path.name for path in wheels]}")
wheel = wheels[0]
name = re.fullmatch(r"clarena_backbones-(?P<version>[^-]+)-cp310-abi3-(?P<platform>[\w.]+)\.whl", wheel.name)
if name is None:
    sys.exit(f"wheels: {wheel.name} is not a clarena_backbones cp310-abi3 wheel")
if "+" in name["version"]:
    sys.exit(f"wheels: {wheel.name} has a local version label, which PyPI refuses")
if not all(re.fullmatch(r"manylinux_2_\d+_x86_64", tag) for tag in name["platform"].split(".")):
    sys.exit(f"wheels: {wheel.name} is not tagged manylinux_2_*_x86_64 only")
files = zipfile.ZipFile(wheel).namelist()
libraries = sorted(path for path in files if ".so" in path)
expected = ["clarena_backbones/_C.abi3.so", "clarena_backbones/_C_cuda.abi3.so"]
if libraries != expected:
    sys.exit(f"wheels: the wheel must hold {expected} and no other library, holds {libraries}")
archive = zipfile.ZipFile(wheel)
cuda_version = archive.read("clarena_backbones/_C_cuda_version.txt").decode().strip()
if not cuda_version.startswith("13."):
    sys.exit(f"wheels: _C_cuda was built for CUDA {cuda_version}, not CUDA 13")
tags = [line.split(": ")[1] for line in archive.read(f"clarena_backbones-{name['version']}.dist-info/WHEEL").decode().splitlines()
        if line.startswith("Tag: ")]
print(f"wheels: {wheel.name}, {wheel.stat().st_size / 2**20:.1f} MiB, tags {tags}, CUDA kernels for CUDA {cuda_version}")
for library in libraries:
    info = archive.getinfo(library)
    print(f"  {library}: {info.file_size / 2**20:.1f} MiB ({info.compress_size / 2**20:.1f} MiB compressed)")
PY

  step "the source distribution"
  (cd "$WORK/src" && "$venv/bin/python" -m build --sdist --no-isolation --outdir dist . >"$WORK/sdist.log" 2>&1) \
    || { cat "$WORK/sdist.log"; exit 1; }
  ls -l "$WORK/src/dist"

  step "abi3audit --strict, twine check --strict, check-wheel-contents"
  "$venv/bin/abi3audit" --strict --verbose "$WORK"/src/dist/*.whl
  "$venv/bin/twine" check --strict "$WORK"/src/dist/*
  "$venv/bin/check-wheel-contents" "$WORK"/src/dist/*.whl

  rm -f "$DIST"/clarena_backbones-*
  cp "$WORK"/src/dist/* "$DIST/"
}

# Runs the op tests against the clarena_backbones installed in a venv, from a folder where the
# import cannot find the source tree.
test_install() {  # venv, label
  local dir="$WORK/tests-$2"
  mkdir -p "$dir" && cp -r "$ROOT/tests" "$ROOT/pyproject.toml" "$dir/"  # pyproject.toml: pytest's markers
  (cd "$dir" && "$1/bin/python" - <<'PY'
import os, sys, warnings
warnings.simplefilter("error", RuntimeWarning)  # a library that should load but does not
import clarena_backbones
from clarena_backbones import ops
if "site-packages" not in clarena_backbones.__file__:
    sys.exit(f"wheels: imported clarena_backbones from {clarena_backbones.__file__}, not from the installed wheel")
if not ops.native_available():
    sys.exit("wheels: the installed native library did not load")
print(f"wheels: clarena_backbones {clarena_backbones.__version__} from {os.path.dirname(clarena_backbones.__file__)}")
PY
  )
  (cd "$dir" && "$1/bin/python" -m pytest -q -p no:cacheprovider "${OP_TESTS[@]/#/tests/}")
}

test_wheel() {
  local wheel venv13 venv14
  wheel="$(ls "$DIST"/clarena_backbones-*.whl)"
  venv13="$(make_venv torch-2.13.0 torch==2.13.0 ${TORCH_CPU_INDEX:+--extra-index-url "$TORCH_CPU_INDEX"})"
  venv14="$(make_venv torch-2.14.1 torch==2.14.1)"

  step "the wheel (built on torch 2.14) on torch 2.13, a CPU build: clarena_backbones._C alone"
  "$venv13/bin/python" -m pip install --quiet --force-reinstall --no-deps "$wheel"
  test_install "$venv13" on-2.13

  step "the wheel on torch 2.14 (CUDA 13.0): every op has its CUDA kernel"
  "$venv14/bin/python" -m pip install --quiet --force-reinstall --no-deps "$wheel"
  (cd "$WORK" && "$venv14/bin/python" "$ROOT/.ci/check_cuda_kernels.py")
  test_install "$venv14" on-2.14
}

for phase in "${PHASES[@]}"; do
  case "$phase" in
    build) build ;;
    test) test_wheel ;;
    *) echo "wheels.sh: unknown phase '$phase' (expected build or test)" >&2; exit 2 ;;
  esac
done
step "wheels: OK (${PHASES[*]}: $(cd "$DIST" && ls | tr '\n' ' '))"
