"""The native libraries are built on the LibTorch stable ABI, so one build loads into every torch
from its floor on: they may call libtorch only through its C shims (torch_*, aoti_torch_*), never a
C++ symbol of c10, ATen or torch, whose layout changes between releases."""

import re
import shutil
import subprocess
import sys

import pytest
import torch
from op_helpers import requires_native

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
