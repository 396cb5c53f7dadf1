"""The import hook that serves `clarena.*` from `clarena_backbones`, with and without CLArena.

Each case runs in a fresh interpreter (the hook acts at import time, once per process). A stub
`clarena` package stands in for CLArena: its own `backbones`, and a `cl_algorithms` that imports
`HATMaskBackbone` from `clarena.backbones` the way CLArena's algorithms do.
"""

import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import _clarena_backbones_hook
import pytest

ROOT = Path(__file__).resolve().parents[1]
# These cases are about an environment without CLArena (with it, `clarena` stays CLArena's).
without_clarena = pytest.mark.skipif(
    _clarena_backbones_hook.find_other_spec("clarena") is not None, reason="CLArena is installed"
)


# Started with -S, the interpreter processes no .pth file (an installed clarena_backbones.pth would
# install the hook before the case begins); site-packages go on sys.path without their .pth files.
SITE_PACKAGES_WITHOUT_PTH = f"import sys\nsys.path.extend({site.getsitepackages()!r})\n"


def run(code: str, *path: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run `code` in a new interpreter with `path`, the repository root and site-packages on sys.path,
    and no .pth file processed (no site hook)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in (*path, ROOT)))
    result = subprocess.run(
        [sys.executable, "-S", "-c", SITE_PACKAGES_WITHOUT_PTH + textwrap.dedent(code)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"subprocess failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def stub_clarena(tmp_path: Path) -> Path:
    """A directory holding a stub CLArena `clarena` package."""
    package = tmp_path / "clarena"
    (package / "backbones").mkdir(parents=True)
    (package / "cl_algorithms").mkdir()
    (package / "__init__.py").write_text("STUB = True\n")
    (package / "backbones" / "__init__.py").write_text("class HATMaskBackbone:\n    STUB = True\n")
    (package / "cl_algorithms" / "__init__.py").write_text("from clarena.backbones import HATMaskBackbone\n")
    return tmp_path


@without_clarena
def test_without_clarena_the_clarena_names_are_this_package():
    run(
        """
        import sys
        import _clarena_backbones_hook
        import clarena, clarena.backbones, clarena.ops, clarena.backbones.hat_mask_mlp as hat_mask_mlp
        import clarena_backbones
        from clarena.backbones import HATMaskMLP

        assert clarena is clarena_backbones
        assert clarena.backbones is clarena_backbones.backbones
        assert clarena.ops is clarena_backbones.ops
        assert hat_mask_mlp is sys.modules["clarena_backbones.backbones.hat_mask_mlp"]
        assert HATMaskMLP is clarena_backbones.backbones.HATMaskMLP
        assert isinstance(clarena.native_available(), bool)
        # one module object under two names keeps its own identity
        assert clarena.backbones.__name__ == "clarena_backbones.backbones"
        assert clarena.backbones.__spec__.name == "clarena_backbones.backbones"
        """
    )


@pytest.mark.parametrize("beside_clarena", [False, True])
def test_importing_a_submodule_by_its_alias_keeps_the_reexported_function(beside_clarena, stub_clarena: Path):
    """`clarena.ops.unit_mask` is both a module and the function `clarena.ops` re-exports under that
    name; importing the module by its alias must not rebind the package's attribute to it."""
    if not beside_clarena and _clarena_backbones_hook.find_other_spec("clarena") is not None:
        pytest.skip("CLArena is installed")
    run(
        """
        import importlib
        import types
        import _clarena_backbones_hook
        import clarena.ops
        import clarena.ops.unit_mask
        from clarena.ops.percentile_mask import percentile_mask

        module = importlib.import_module("clarena.ops.unit_mask")
        assert isinstance(module, types.ModuleType) and module.__name__ == "clarena_backbones.ops.unit_mask"
        for name in ("unit_mask", "percentile_mask"):
            assert isinstance(getattr(clarena.ops, name), types.FunctionType), name
        """,
        *([stub_clarena] if beside_clarena else []),
    )


def test_with_clarena_only_our_subpackages_are_served(stub_clarena: Path):
    run(
        """
        import _clarena_backbones_hook
        import clarena, clarena.backbones, clarena.cl_algorithms, clarena.ops
        import clarena_backbones

        assert getattr(clarena, "STUB", False), "clarena itself must stay CLArena's"
        assert clarena.backbones is clarena_backbones.backbones
        assert clarena.cl_algorithms.HATMaskBackbone is clarena_backbones.backbones.HATMaskBackbone
        assert clarena.ops is clarena_backbones.ops
        assert not hasattr(clarena, "native_available")
        """,
        stub_clarena,
    )


@pytest.mark.parametrize("name", [alias for alias in _clarena_backbones_hook.ALIASES if alias != "backbones"])
def test_a_clarena_module_of_an_alias_name_wins_with_a_warning(stub_clarena: Path, name: str):
    (stub_clarena / "clarena" / name).mkdir()
    (stub_clarena / "clarena" / name / "__init__.py").write_text("CLARENAS = True\n")
    result = run(
        f"""
        import importlib
        import warnings
        import _clarena_backbones_hook
        import clarena_backbones

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module("clarena.{name}")
            importlib.import_module("clarena.{name}")
        assert getattr(module, "CLARENAS", False), module
        assert importlib.import_module("clarena_backbones.{name}") is not module
        messages = [str(warning.message) for warning in caught if "clarena.{name}" in str(warning.message)]
        assert len(messages) == 1, messages
        print(messages[0])
        # backbones is still this package's, and the other aliases are still served
        import clarena.backbones
        assert clarena.backbones is clarena_backbones.backbones
        """,
        stub_clarena,
    )
    assert f"The installed CLArena has its own `clarena.{name}`" in result.stdout


def test_only_the_listed_aliases_are_served_beside_clarena(stub_clarena: Path):
    # the aliases are this package's subpackages, and a name off the list is not served
    run(
        """
        import importlib.util, pkgutil
        import _clarena_backbones_hook
        import clarena_backbones

        served = set(_clarena_backbones_hook.ALIASES)
        ours = {info.name for info in pkgutil.iter_modules(clarena_backbones.__path__) if info.ispkg}
        assert served <= ours, served - ours
        _clarena_backbones_hook.ALIASES = ("backbones",)
        assert importlib.util.find_spec("clarena.backbones") is not None
        assert importlib.util.find_spec("clarena.ops") is None
        """,
        stub_clarena,
    )


def test_hydra_target_resolves_to_this_package_beside_clarena(stub_clarena: Path):
    run(
        """
        import _clarena_backbones_hook
        import hydra.utils
        import clarena_backbones

        backbone = hydra.utils.instantiate(
            {"_target_": "clarena.backbones.HATMaskMLP", "input_dim": 4, "hidden_dims": [3], "output_dim": 2, "gate": "sigmoid"}
        )
        assert type(backbone) is clarena_backbones.backbones.HATMaskMLP
        """,
        stub_clarena,
    )


def test_unknown_clarena_names_are_not_found(stub_clarena: Path):
    result = run("import _clarena_backbones_hook, clarena.backbones.no_such_module", stub_clarena, check=False)
    assert "ModuleNotFoundError" in result.stderr and "no_such_module" in result.stderr
    result = run("import _clarena_backbones_hook, clarena.no_such_package", check=False)
    assert "ModuleNotFoundError" in result.stderr and "clarena.no_such_package" in result.stderr


def test_without_the_hook_clarena_keeps_its_own_backbones(stub_clarena: Path):
    run(
        """
        import _clarena_backbones_hook
        _clarena_backbones_hook.uninstall()
        import clarena.cl_algorithms
        assert clarena.cl_algorithms.HATMaskBackbone.STUB
        """,
        stub_clarena,
    )


def test_import_warns_when_clarena_backbones_is_already_clarenas(stub_clarena: Path):
    result = run(
        """
        import warnings
        import clarena.backbones  # imported before the hook: CLArena's own
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import clarena_backbones
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        print("\\n".join(messages))
        """,
        stub_clarena,
    )
    assert "clarena.backbones is CLArena's own module" in result.stdout
    assert "Import clarena_backbones before anything from clarena" in result.stdout


def test_import_installs_the_hook_when_site_did_not(stub_clarena: Path):
    run(
        """
        import warnings
        warnings.simplefilter("error", RuntimeWarning)
        import clarena_backbones  # no .pth ran: importing the package installs the hook
        import clarena.backbones
        assert clarena.backbones is clarena_backbones.backbones
        """,
        stub_clarena,
    )


@without_clarena
def test_pth_file_installs_the_hook_without_importing_torch(tmp_path: Path):
    (tmp_path / "clarena_backbones.pth").write_text((ROOT / "clarena_backbones.pth").read_text())
    run(
        f"""
        import site, sys
        site.addsitedir({str(tmp_path)!r})
        import _clarena_backbones_hook
        assert sys.meta_path[0] is _clarena_backbones_hook.ALIAS_FINDER
        assert "torch" not in sys.modules and "clarena_backbones" not in sys.modules
        import clarena
        assert clarena.__name__ == "clarena_backbones"
        """
    )


@without_clarena
def test_python_m_clarena_runs_the_demo():
    code = "import _clarena_backbones_hook, runpy, sys; sys.argv = ['clarena', '--help']; runpy.run_module('clarena', run_name='__main__')"
    result = run(code, check=False)
    assert result.returncode == 0, result.stderr
    assert "usage: clarena-demo" in result.stdout
