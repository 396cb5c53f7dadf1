"""The source distribution builds on its own: it carries the native headers and the .pth file."""

import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sdist_holds_every_native_source_and_the_pth_file(tmp_path: Path):
    subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path), "sdist", "-d", str(tmp_path)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )
    (archive,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(archive) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    expected = {str(path.relative_to(ROOT)) for path in (ROOT / "csrc").rglob("*") if path.suffix in (".h", ".cpp", ".cu")}
    expected |= {"clarena_backbones.pth", "_clarena_backbones_hook.py"}
    assert expected <= names, sorted(expected - names)
