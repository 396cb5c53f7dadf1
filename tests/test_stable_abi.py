"""The native libraries are built on the LibTorch stable ABI, so one build loads into every torch
from its floor on: they may call libtorch only through its C shims (torch_*, aoti_torch_*), never a
C++ symbol of c10, ATen or torch, whose layout changes between releases."""

import importlib.util
import re
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from op_helpers import requires_native

from clarena_backbones.ops import native

# Itanium-mangled names in the c10, at or torch namespaces (functions, typeinfo, vtables).
TORCH_CXX_SYMBOL = re.compile(r"^_Z(?:N|T[ISV]N)K?(?:3c10|2at|5torch)")


def loaded_native_libraries():
    return [sys.modules[name].__file__ for name in ("clarena_backbones._C", "clarena_backbones._C_cuda") if name in sys.modules]


def undefined_symbols(path):
    result = subprocess.run(["nm", "-D", "--undefined-only", path], capture_output=True, text=True, check=True)
    return [line.split()[-1] for line in result.stdout.splitlines() if line.strip()]


def test_the_pattern_recognises_torch_cxx_symbols():
    assert TORCH_CXX_SYMBOL.match("_ZN3c106detail14torchCheckFailEPKcS2_jS2_")
    assert TORCH_CXX_SYMBOL.match("_ZNK2at10TensorBase21__dispatch_contiguousEN3c1012MemoryFormatE")
    assert TORCH_CXX_SYMBOL.match("_ZTIN3c105ErrorE")
    assert not TORCH_CXX_SYMBOL.match("torch_parallel_for")
    assert not TORCH_CXX_SYMBOL.match("_ZNSt7__cxx1119basic_ostringstreamIcSt11char_traitsIcESaIcEEC1Ev")


@requires_native
@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils)")
def test_native_libraries_call_libtorch_only_through_its_stable_c_shims():
    libraries = loaded_native_libraries()
    assert libraries, "no native library loaded"
    for path in libraries:
        symbols = undefined_symbols(path)
        assert any(name.startswith(("torch_", "aoti_torch_")) for name in symbols), path
        assert [name for name in symbols if TORCH_CXX_SYMBOL.match(name)] == [], path


@requires_native
def test_cuda_kernels_are_loaded_exactly_when_torch_can_run_them():
    # A CPU-only torch must never get clarena_backbones._C_cuda (it would not load without the CUDA runtime).
    if torch.version.cuda is None:
        assert "clarena_backbones._C_cuda" not in sys.modules
    has_cuda_kernel = torch._C._dispatch_has_kernel_for_dispatch_key("clarena::percentile_mask", "CUDA")
    assert has_cuda_kernel == ("clarena_backbones._C_cuda" in sys.modules)


def test_cuda_kernels_load_only_into_a_torch_of_the_cuda_major_they_were_built_for():
    assert native.cuda_kernels_mismatch("13.0", "13.0") is None
    assert native.cuda_kernels_mismatch("13.0", "13.2") is None
    assert native.cuda_kernels_mismatch("12.8", "12.4") is None
    assert native.cuda_kernels_mismatch("13.0", "12.8") == (
        "the CUDA kernels were built for CUDA 13.0 and this torch uses CUDA 12.8")
    assert native.cuda_kernels_mismatch("12.8", "13.0") is not None
    assert native.cuda_kernels_mismatch("1.3", "13.0") is not None  # majors compare as numbers, not prefixes
    assert native.cuda_kernels_mismatch(None, "13.0") == "this build has no CUDA kernels"


def _load_cuda_kernels_into(monkeypatch, built_for, torch_cuda, gpu_available):
    """Runs the CUDA kernels' loader as if torch were built for `torch_cuda`; returns its warnings."""
    monkeypatch.setattr(torch.version, "cuda", torch_cuda)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu_available)
    monkeypatch.setattr(native, "_cuda_kernels_built_for", lambda: built_for)
    imported_before = "clarena_backbones._C_cuda" in sys.modules
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        native._load_cuda_kernels()
    assert ("clarena_backbones._C_cuda" in sys.modules) == imported_before  # nothing was loaded
    return [str(warning.message) for warning in caught]


@requires_native
def test_mismatched_cuda_kernels_are_not_loaded_and_warn_in_one_line_only_with_a_gpu(monkeypatch):
    (message,) = _load_cuda_kernels_into(monkeypatch, "13.0", "12.8", gpu_available=True)
    assert message.startswith("clarena: the CUDA kernels were built for CUDA 13.0 and this torch uses CUDA 12.8")
    assert native.SOURCE_BUILD in message and "\n" not in message
    assert _load_cuda_kernels_into(monkeypatch, "13.0", "12.8", gpu_available=False) == []
    (message,) = _load_cuda_kernels_into(monkeypatch, None, "13.0", gpu_available=True)
    assert message.startswith("clarena: this build has no CUDA kernels") and "\n" not in message


@requires_native
def test_the_cuda_kernels_record_the_cuda_version_they_were_built_for():
    built_for = native._cuda_kernels_built_for()
    if importlib.util.find_spec("clarena_backbones._C_cuda") is None:
        assert built_for is None
        return
    assert re.fullmatch(r"\d+\.\d+", built_for), built_for
    if "clarena_backbones._C_cuda" in sys.modules:
        assert built_for.split(".")[0] == torch.version.cuda.split(".")[0]
