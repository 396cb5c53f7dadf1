"""Registration with Mammoth's registries: explicit, automatic on import, and never importing Mammoth.

The automatic cases run in a fresh interpreter, where `import clarena` happens before or after
the stand-in's `backbone` and `models` packages are imported.
"""

import shutil

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
