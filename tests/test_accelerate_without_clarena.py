"""accelerate_clarena() without CLArena: the content check and the patching, on stand-in classes.

The cases with CLArena 1.1.0 itself are in tests/clarena_integration/test_accelerate.py.
"""

import importlib
import sys
import textwrap
import types

import pytest

from clarena import accelerate
from clarena.accelerate import clarena_1_1, patching

STAND_IN = '''
class HAT:
    def clip_grad_by_adjustment(self, scale):
    {docstring}
        return [value * scale for value in self.values]
'''
DOCSTRING = '    """Scale the values."""'
REFORMATTED = '''
class HAT:

    def clip_grad_by_adjustment(
        self,
        scale,
    ):  # a comment, new line breaks and another docstring change nothing
        """Multiply every value by `scale`."""
        return [
            value * scale
            for value in self.values
        ]
'''
CHANGED = STAND_IN.replace("value * scale", "value * scale + 1")


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """Writes `standin_algorithms.py` with the given source and imports it afresh; an adapter
    `clarena_9_9` is written for the first version."""
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = []

    def replacement(self, original, scale):
        calls.append(scale)
        return original(self, scale * 10)

    def load(source):
        (tmp_path / "standin_algorithms.py").write_text(textwrap.dedent(source))
        sys.modules.pop("standin_algorithms", None)
        importlib.invalidate_caches()
        return importlib.import_module("standin_algorithms")

    written_for = load(STAND_IN.format(docstring=DOCSTRING))
    digest = patching.source_digest(written_for.HAT.clip_grad_by_adjustment)
    adapter = types.SimpleNamespace(
        __name__="clarena_backbones.accelerate.clarena_9_9",
        METHODS={("standin_algorithms", "HAT", "clip_grad_by_adjustment"): (digest, replacement)},
    )
    monkeypatch.setattr(patching, "adapters", lambda: [adapter])
    yield load, calls
    accelerate.restore_clarena()
    sys.modules.pop("standin_algorithms", None)


def algorithm(module):
    instance = module.HAT()
    instance.values = [1, 2]
    return instance


def test_the_implementation_an_adapter_was_written_for_is_replaced_and_restored(stand_in):
    load, calls = stand_in
    module = load(STAND_IN.format(docstring=DOCSTRING))
    original = module.HAT.__dict__["clip_grad_by_adjustment"]
    assert accelerate.accelerate_clarena() and accelerate.is_accelerated()
    assert algorithm(module).clip_grad_by_adjustment(3) == [30, 60] and calls == [3]
    replaced = module.HAT.__dict__["clip_grad_by_adjustment"]
    assert replaced.__clarena_accelerated__ and replaced.__wrapped__ is original
    assert accelerate.accelerate_clarena()
    assert module.HAT.__dict__["clip_grad_by_adjustment"] is replaced  # not wrapped twice
    accelerate.restore_clarena()
    assert module.HAT.__dict__["clip_grad_by_adjustment"] is original and not accelerate.is_accelerated()


def test_reformatted_source_still_matches(stand_in):
    load, calls = stand_in
    module = load(REFORMATTED)
    assert accelerate.accelerate_clarena()
    assert algorithm(module).clip_grad_by_adjustment(2) == [20, 40] and calls == [2]


def test_a_changed_method_body_is_left_alone_with_a_warning_naming_it(stand_in):
    load, calls = stand_in
    module = load(CHANGED.format(docstring=DOCSTRING))
    original = module.HAT.__dict__["clip_grad_by_adjustment"]
    with pytest.warns(RuntimeWarning, match=r"standin_algorithms\.HAT\.clip_grad_by_adjustment is not an implementation .*\(clarena_9_9\); accelerate_clarena\(\) leaves it as it is"):
        assert accelerate.accelerate_clarena() is False
    assert module.HAT.__dict__["clip_grad_by_adjustment"] is original and not calls
    assert algorithm(module).clip_grad_by_adjustment(2) == [3, 5]


def test_a_missing_class_is_named_too(stand_in):
    load, _ = stand_in
    load("class WSN:\n    pass\n")
    with pytest.warns(RuntimeWarning, match=r"standin_algorithms\.HAT\.clip_grad_by_adjustment is not an implementation"):
        assert accelerate.accelerate_clarena() is False


def test_a_module_only_another_release_has_is_named_and_the_rest_is_replaced(stand_in, monkeypatch):
    load, calls = stand_in
    module = load(STAND_IN.format(docstring=DOCSTRING))
    (adapter,) = patching.adapters()
    monkeypatch.setitem(adapter.METHODS, ("standin_absent", "WSN", "clip_grad_by_mask"), ("0" * 64, lambda self, original: None))
    with pytest.warns(RuntimeWarning, match=r"standin_absent\.WSN\.clip_grad_by_mask is not an implementation"):
        assert accelerate.accelerate_clarena()
    assert algorithm(module).clip_grad_by_adjustment(1) == [10, 20] and calls == [1]


class Original:
    def step(self, x):
        return x + 1


class Reformatted:
    def step(self, x):  # a comment and a docstring
        """Add one."""
        return (
            x + 1
        )


class Changed:
    def step(self, x):
        return x + 2


def test_the_digest_ignores_formatting_but_not_code():
    digest = patching.source_digest(Original.step)
    assert patching.source_digest(Reformatted.step) == digest != patching.source_digest(Changed.step)
    assert patching.source_digest(len) is None  # no Python source: never matches an adapter


def test_the_adapters_cover_clarenas_per_step_methods():
    assert patching.adapters() == [clarena_1_1]
    assert set(clarena_1_1.METHODS) == {
        ("clarena.cl_algorithms.hat", "HAT", "clip_grad_by_adjustment"),
        ("clarena.cl_algorithms.hat", "HAT", "compensate_task_embedding_gradients"),
        ("clarena.cl_algorithms.adahat", "AdaHAT", "clip_grad_by_adjustment"),
        ("clarena.cl_algorithms.fgadahat", "FGAdaHAT", "clip_grad_by_adjustment"),
        ("clarena.cl_algorithms.wsn", "WSN", "clip_grad_by_mask"),
    }
    for digest, replacement in clarena_1_1.METHODS.values():
        assert len(digest) == 64 and int(digest, 16) >= 0 and callable(replacement)


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
