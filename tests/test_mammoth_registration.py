"""Registration with Mammoth's registries: explicit, automatic on import, and never importing Mammoth.

The automatic cases run in a fresh interpreter, where `import clarena` happens before or after
the stand-in's `backbone` and `models` packages are imported.
"""

import shutil
import zipfile

import pytest

import clarena.mammoth
from clarena.mammoth import BACKBONES, MODEL_NAMES
from mammoth_helpers import STAND_IN, run_python

SHOW = (
    "import backbone, models\n"
    "print(sorted(n for n in backbone.REGISTERED_BACKBONES if n.startswith('clarena')))\n"
    "print(sorted(n for n in models.REGISTERED_MODELS if n.startswith('clarena')))\n"
)
EXPECTED = f"{sorted(BACKBONES)}\n{sorted(MODEL_NAMES)}\n"


def test_importing_clarena_does_not_import_mammoth():
    out = run_python("import sys, clarena, clarena.mammoth\nprint('backbone' in sys.modules, 'models' in sys.modules)", STAND_IN)
    assert out == "False False\n"


def test_importing_clarena_first_registers_when_mammoth_imports_its_packages():
    assert run_python("import clarena\n" + SHOW, STAND_IN) == EXPECTED


def test_a_one_line_file_in_mammoths_backbone_folder_registers(tmp_path):
    # the README's set-up: `import clarena` runs while Mammoth's backbone package imports its folder
    shutil.copytree(STAND_IN, tmp_path / "mammoth")
    (tmp_path / "mammoth" / "backbone" / "clarena_plugin.py").write_text("import clarena.mammoth\n")
    assert run_python(SHOW, tmp_path / "mammoth") == EXPECTED


def test_packages_of_the_same_names_that_are_not_mammoths_are_left_alone(tmp_path):
    (tmp_path / "backbone.py").write_text("VALUE = 1\n")
    out = run_python("import clarena, backbone\nprint(sorted(n for n in vars(backbone) if not n.startswith('__')))", tmp_path)
    assert out == "['VALUE']\n"


USER_PACKAGE_CHECKS = """
import importlib.machinery, importlib.resources, inspect, pkgutil, sys, zipimport
import clarena
import {name}

assert {name}.VALUE == 1
assert pkgutil.get_data("{name}", "data.txt") == b"user data"
assert importlib.resources.files("{name}").joinpath("data.txt").read_text() == "user data"
assert "VALUE = 1" in inspect.getsource({name})
assert {name}.__spec__.loader is {name}.__loader__
assert type({name}.__loader__) in (importlib.machinery.SourceFileLoader, zipimport.zipimporter), {name}.__loader__
print(type({name}.__loader__).__name__)
"""


def _user_package(root, name: str) -> None:
    (root / name).mkdir(parents=True)
    # a docstring naming Mammoth's registry function does not make it Mammoth's package
    (root / name / "__init__.py").write_text('"""Not def register_model( nor def register_backbone(."""\nVALUE = 1\n')
    (root / name / "data.txt").write_text("user data")


@pytest.mark.parametrize("name", ["models", "backbone"])
def test_a_users_own_package_of_a_mammoth_name_keeps_its_loader(tmp_path, name):
    _user_package(tmp_path, name)
    assert run_python(USER_PACKAGE_CHECKS.format(name=name), tmp_path) == "SourceFileLoader\n"


@pytest.mark.parametrize("name", ["models", "backbone"])
def test_a_users_zipped_package_of_a_mammoth_name_keeps_its_loader(tmp_path, name):
    _user_package(tmp_path / "src", name)
    archive = tmp_path / "user.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in (tmp_path / "src" / name).iterdir():
            zipped.write(path, f"{name}/{path.name}")
    assert run_python(USER_PACKAGE_CHECKS.format(name=name), archive) == "zipimporter\n"


def test_mammoths_packages_keep_their_own_loaders_after_registering():
    out = run_python(
        "import clarena, backbone, models, inspect\n"
        "assert 'clarena-hat-mlp' in backbone.REGISTERED_BACKBONES and 'clarena-hat' in models.REGISTERED_MODELS\n"
        "for package in (backbone, models):\n"
        "    assert package.__spec__.loader is package.__loader__\n"
        "    assert 'def register_' in inspect.getsource(package)\n"
        "print(type(backbone.__loader__).__name__, type(models.__loader__).__name__)\n",
        STAND_IN,
    )
    assert out == "SourceFileLoader SourceFileLoader\n"


def test_register_is_one_call_and_can_be_repeated(mammoth):
    backbone_package, models_package = mammoth
    clarena.mammoth.register()  # the fixture registered already: Mammoth would raise on a duplicate
    assert set(BACKBONES) <= set(backbone_package.REGISTERED_BACKBONES)
    assert {name: models_package.REGISTERED_MODELS[name]["class"].NAME for name in MODEL_NAMES} == {
        name: name for name in MODEL_NAMES
    }
    for name, factory in BACKBONES.items():
        assert backbone_package.REGISTERED_BACKBONES[name]["class"] is factory


def test_register_without_mammoth_says_what_is_missing():
    out = run_python(
        "import clarena.mammoth\n"
        "try:\n    clarena.mammoth.register()\nexcept ImportError as error:\n    print(error)\n"
    )
    assert "Mammoth's `backbone` package" in out


def test_register_refuses_a_backbone_package_that_is_not_mammoths(tmp_path):
    (tmp_path / "backbone.py").write_text("VALUE = 1\n")
    out = run_python(
        "import clarena.mammoth\n"
        "try:\n    clarena.mammoth.register()\nexcept ImportError as error:\n    print(error)\n",
        tmp_path,
    )
    assert "is not Mammoth's" in out and "register_backbone" in out


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_registered_names_are_mammoths_normal_form(name):
    assert name == name.replace("_", "-").lower() and name.startswith("clarena-")
