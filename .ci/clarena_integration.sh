#!/usr/bin/env bash
# This package beside CLArena 1.1.0, in a venv of its own (created afresh, removed at the end):
#  1. install both in each order (CLArena first, then this package; this package first, then
#     CLArena), with this package installed regularly and editable; after each, check that
#     `clarena.backbones` is this package's, that CLArena's algorithms get it, and that no file is
#     listed in both distributions' RECORD files (each RECORD's top-level entries are printed);
#  2. reinstall CLArena over this package: this package stays in charge; then the install command
#     docs/clarena.md states (its <!-- clarena-command --> block), run as written;
#  3. run tests/clarena_integration (CLArena's own algorithms over these backbones);
#  4. uninstall this package: CLArena imports its own backbones again, and nothing of ours is left.
# CLArena's metadata also pulls wandb, tensorboard, dataset downloaders...: it is installed with
# --no-deps plus what the imports of its algorithms need (torchvision must match the torch build:
# torch 2.14.1 with torchvision 0.29.1).
#
# Environment: CLARENA_INTEGRATION_VENV  venv directory (default: a new temporary one)
#              MAX_JOBS                  parallel compile jobs (default 2)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/clarena-integration.XXXXXX")"
VENV="${CLARENA_INTEGRATION_VENV:-$WORK/venv}"
trap 'rm -rf "$WORK"' EXIT
export MAX_JOBS="${MAX_JOBS:-2}"
PY="$VENV/bin/python"
step() { echo; echo "=== clarena_integration: $*"; }
# pip, its output shown without the index-location noise; a failure stops the script
pip_quiet() {
  "$PY" -m pip "$@" > "$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log"; return 1; }
  grep -v -e '^WARNING: Location' -e '^$' "$WORK/pip.log" || true
}

step "venv $VENV"
python3 -m venv "$VENV"
pip_quiet install -q torch==2.14.1 torchvision==0.29.1 setuptools wheel ninja pytest lightning hydra-core torchmetrics matplotlib
pip_quiet install -q --no-deps captum
pip_quiet download -q --no-deps -d "$WORK/dist" clarena==1.1.0
CLARENA_WHEEL=("$WORK"/dist/clarena-1.1.0-*.whl)

step "build this package's wheel once (the regular installs reuse it)"
start=$SECONDS
pip_quiet wheel -q --no-build-isolation --no-deps -w "$WORK/dist" "$ROOT"
OUR_WHEEL=("$WORK"/dist/clarena_backbones-*.whl)
echo "built ${OUR_WHEEL[0]##*/} in $((SECONDS - start)) s"

install_clarena() { pip_quiet install -q --no-deps --force-reinstall "${CLARENA_WHEEL[0]}"; }
install_ours() {
  if [[ "$1" == editable ]]; then
    # only the layout is checked on the editable installs: DEBUG=1 (-O0) builds faster
    DEBUG=1 pip_quiet install -q --no-build-isolation --no-deps -e "$ROOT"
  else
    pip_quiet install -q --no-deps --force-reinstall "${OUR_WHEEL[0]}"
  fi
}
uninstall_both() { pip_quiet uninstall -y -q clarena-backbones clarena; }
# docs/clarena.md marks its install command with <!-- clarena-command --> on the line before its code block
CLARENA_COMMAND=$(awk '/<!-- clarena-command -->/ {marked = 1; next}
  marked && /^```bash/ {inside = 1; next}
  inside && /^```/ {exit}
  inside {print}' "$ROOT/docs/clarena.md")
install_as_documented() {
  echo "+ ${CLARENA_COMMAND}"
  (cd "$ROOT" && PATH="$VENV/bin:$PATH" bash -euo pipefail -c "$CLARENA_COMMAND") > "$WORK/pip.log" 2>&1 \
    || { cat "$WORK/pip.log"; return 1; }
}

check_ours_in_charge() {
  (cd "$WORK" && "$PY" - <<'EOF'
import clarena
import clarena.backbones
import clarena.cl_algorithms.hat as hat
import clarena_backbones

assert clarena.backbones is clarena_backbones.backbones, f"clarena.backbones is {clarena.backbones.__file__}"
assert hat.HATMaskBackbone is clarena_backbones.backbones.HATMaskBackbone
assert clarena.__file__.endswith("site-packages/clarena/__init__.py"), f"clarena is {clarena.__file__}, not CLArena's"
print(f"clarena.backbones -> {clarena_backbones.backbones.__file__}; clarena -> CLArena's {clarena.__file__}")
EOF
  )
}

check_records() {
  (cd "$WORK" && "$PY" - <<'EOF'
import collections
import importlib.metadata as metadata

owned = {}
for name in ("clarena", "clarena-backbones"):
    files = {str(path) for path in metadata.distribution(name).files}
    owned[name] = files
    top = collections.Counter(path.split("/")[0] for path in files if not path.startswith(".."))
    print(f"  {name} RECORD: {len(files)} files; top level: "
          + ", ".join(f"{entry} ({count})" for entry, count in sorted(top.items())))
shared = owned["clarena"] & owned["clarena-backbones"]
assert not shared, f"files owned by both distributions: {sorted(shared)}"
print("  no file is owned by both distributions")
EOF
  )
}

for mode in regular editable; do
  step "CLArena first, then this package ($mode)"
  uninstall_both
  install_clarena
  install_ours "$mode"
  check_ours_in_charge
  check_records

  step "this package first ($mode), then CLArena"
  uninstall_both
  install_ours "$mode"
  install_clarena
  check_ours_in_charge
  check_records
done

step "regular install; reinstalling CLArena keeps this package in charge"
uninstall_both
install_ours regular
install_clarena
install_clarena
check_ours_in_charge

step "CLArena, then this package by the command of docs/clarena.md"
uninstall_both
install_clarena
install_as_documented
check_ours_in_charge
check_records

step "tests/clarena_integration"
(cd "$WORK" && "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -rs "$ROOT/tests/clarena_integration")

step "uninstall this package: CLArena's own backbones are back"
pip_quiet uninstall -y -q clarena-backbones
(cd "$WORK" && "$PY" - <<'EOF'
import importlib.util
import sysconfig
from pathlib import Path

import clarena.backbones
import clarena.cl_algorithms
from clarena.backbones import CLBackbone, HATMaskMLP  # noqa: F401

assert clarena.backbones.__name__ == "clarena.backbones" and "clarena_backbones" not in clarena.backbones.__file__
assert importlib.util.find_spec("clarena_backbones") is None
site = Path(sysconfig.get_paths()["purelib"])
left = [path.name for path in site.iterdir() if "clarena_backbones" in path.name]
assert not left, f"left behind in site-packages: {left}"
print(f"CLArena imports its own backbones: {clarena.backbones.__file__}")
EOF
)
step "OK"
