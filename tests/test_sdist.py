"""The source distribution builds on its own: it carries the native sources and the .pth file,
and `pip install --no-build-isolation <sdist>` builds and installs it into a venv that has torch."""

import subprocess
import sys
import sysconfig
import tarfile
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(folder), "sdist", "-d", str(folder)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )
    (archive,) = folder.glob("*.tar.gz")
    return archive


def test_sdist_holds_every_native_source_and_the_pth_file(sdist: Path):
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    expected = {str(path.relative_to(ROOT)) for path in (ROOT / "csrc").rglob("*") if path.suffix in (".h", ".cpp", ".cu")}
    expected |= {"clarena_backbones.pth", "_clarena_backbones_hook.py"}
    assert expected <= names, sorted(expected - names)


@pytest.mark.slow
def test_sdist_installs_into_a_venv_that_has_torch(sdist: Path, tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site_packages = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip()
    # torch, numpy, pip and the build tools come from the environment running the tests, as if
    # installed into the venv (a path listed in a .pth file is searched, but .pth files inside it
    # are not run, so this environment's own clarena_backbones install stays invisible).
    (Path(site_packages) / "test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    install = subprocess.run([python, "-m", "pip", "install", "--no-build-isolation", str(sdist)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    check = textwrap.dedent(f"""
        import warnings
        warnings.simplefilter("error", RuntimeWarning)  # the native library must load
        import torch
        import clarena.backbones
        import clarena_backbones
        from clarena_backbones import ops
        from clarena_backbones.ops import reference
        assert clarena_backbones.__file__.startswith({str(venv)!r}), clarena_backbones.__file__
        assert clarena.backbones is clarena_backbones.backbones
        assert ops.native_available()
        score = torch.randn(1000)
        torch.testing.assert_close(ops.percentile_mask(score, 0.3), reference.percentile_mask(score, 0.3))
        print("installed", clarena_backbones.__file__)
    """)
    run = subprocess.run([python, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
