"""accelerate_clarena() without CLArena: a no-op that says why (the CLArena cases are in tests/clarena_integration/)."""

import importlib

import pytest

from clarena import accelerate


def test_without_clarena_nothing_changes_and_a_warning_says_why(monkeypatch):
    real_import = importlib.import_module

    def import_without_clarena(name, *args):
        if name.startswith("clarena.cl_algorithms"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", import_without_clarena)
    with pytest.warns(RuntimeWarning, match=r"CLArena is not installed .*accelerate_clarena\(\) changed nothing"):
        assert accelerate.accelerate_clarena() is False
    assert not accelerate.is_accelerated()
    accelerate.restore_clarena()  # nothing to restore
