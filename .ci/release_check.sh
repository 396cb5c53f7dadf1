#!/usr/bin/env bash
# Before the publish job uploads dist/ to PyPI: the tag names the package's version, CHANGELOG.md
# has a section for it, and dist/ holds exactly that version's sdist and one wheel whose glibc
# floor is at most torch's own (manylinux_2_28), so every machine torch installs on takes it.
#
#   bash .ci/release_check.sh v0.1.0     (the tag; GITHUB_REF_NAME in the workflow)
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_repository_root
tag="${1:?usage: release_check.sh TAG (e.g. v0.1.0)}"
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' clarena_backbones/__init__.py)"

python3 - "$tag" "$version" "${WHEEL_DIR:-dist}" <<'PY'
import pathlib, re, sys
tag, version, dist = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
problems = []
if tag != f"v{version}":
    problems.append(f"the tag {tag} does not name clarena_backbones.__version__ {version} (expected v{version})")
if not re.search(rf"^## \[?{re.escape(version)}\]? - \d{{4}}-\d{{2}}-\d{{2}}$", pathlib.Path("CHANGELOG.md").read_text(), re.M):
    problems.append(f"CHANGELOG.md has no dated section '## [{version}] - YYYY-MM-DD'")
files = sorted(path.name for path in dist.iterdir()) if dist.is_dir() else []
sdists = [name for name in files if name == f"clarena_backbones-{version}.tar.gz"]
wheels = [name for name in files if re.fullmatch(rf"clarena_backbones-{re.escape(version)}-cp310-abi3-[\w.]+\.whl", name)]
if len(sdists) != 1 or len(wheels) != 1 or len(files) != 2:
    problems.append(f"{dist}/ must hold the sdist and the wheel of {version} and nothing else; holds {files}")
else:
    floors = [int(minor) for minor in re.findall(r"manylinux_2_(\d+)_x86_64", wheels[0])]
    if not floors or min(floors) > 28:
        problems.append(f"{wheels[0]} needs a newer glibc than torch's wheels (manylinux_2_28); build it in the manylinux_2_28 container")
if problems:
    sys.exit("release_check: " + "\n  ".join(["refused:", *problems]))
print(f"release_check: {tag}: {', '.join(files)}")
PY
