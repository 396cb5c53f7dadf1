# Helpers of the CI scripts; source it from the repository root.

# Exits 2 unless the current folder is the repository root.
require_repository_root() {
  if [[ ! -f setup.py || ! -d csrc ]]; then
    echo "$(basename "$0"): run from the repository root (no setup.py or csrc/ in $(pwd))" >&2
    exit 2
  fi
}

# Copies the sources (tracked and untracked-but-not-ignored files, no build output) to a folder.
copy_sources() {  # repository root, destination
  mkdir -p "$2"
  git -C "$1" ls-files -co --exclude-standard -z | grep -zv -e '^build/' -e '^dist/' -e '\.so$' \
    | tar -C "$1" --null -cf - -T - | tar -C "$2" -xf -
}

# Prints the command that a document marks with `<!-- NAME -->`: the fenced code block after the
# marker (README.md's test command, docs/wheels.md's wheel command), whole, continuation lines
# included. Exits 2 when there is none, so CI can never run an empty command.
documented_command() {  # file, marker name
  local command
  command=$(awk -v marker="<!-- $2 -->" '
    $0 == marker { found = 1; next }
    found && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' "$1")
  if [[ -z "$command" ]]; then
    echo "$(basename "$0"): no command after <!-- $2 --> in $1" >&2
    exit 2
  fi
  echo "$command"
}
