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
