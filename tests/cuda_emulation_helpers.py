"""The CUDA kernels of csrc/ops/cuda/, compiled for the host by the emulation harness.

`emulated_ops()` builds (once per source version, cached under build/cuda_emulation/) a shared
library from csrc/emulation/: every .cu file compiled by g++ with csrc/emulation/cuda_emulation.h
force-included, so each CUDA thread runs as a fiber on the CPU. It registers nothing with torch's
dispatcher; its ops are called through ctypes with the signatures of torch.ops.clarena.*, take CPU
tensors and return CPU tensors. `schedule(seed)` chooses the interleaving of the launches that follow.
"""

import concurrent.futures
import ctypes
import functools
import hashlib
import os
import pathlib
import shutil
import subprocess

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
EMULATION = CSRC / "emulation"
CACHE = ROOT / "build" / "cuda_emulation"
# What clarena_backbones._C builds with (setup.py), plus the emulation's own include directory.
FLAGS = ["-std=c++17", "-O2", "-fPIC", "-ffp-contract=off", "-DTORCH_TARGET_VERSION=0x020d000000000000",
         "-include", str(EMULATION / "cuda_emulation.h"), f"-I{EMULATION / 'include'}", f"-I{CSRC}"]
# Fewer multiprocessors than any GPU, so that grid-stride loops go round several times even at
# the small sizes the tests use.
MULTIPROCESSORS = 3


def _source_key(compiler: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(CSRC.rglob("*")):
        if path.suffix in (".h", ".cpp", ".cu"):
            digest.update(str(path.relative_to(CSRC)).encode())
            digest.update(path.read_bytes())
    digest.update(" ".join(FLAGS + [compiler, torch.__version__]).encode())
    return digest.hexdigest()[:20]


def _build() -> pathlib.Path:
    compiler = os.environ.get("CXX", shutil.which("g++") or "c++")
    target = CACHE / _source_key(compiler) / "libclarena_cuda_emulation.so"
    if target.exists():
        return target
    torch_dir = pathlib.Path(torch.__file__).parent
    include = [f"-I{torch_dir / 'include'}"]
    work = target.parent / f"tmp-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    sources = sorted(EMULATION.glob("*.cpp"))

    def compile_one(source: pathlib.Path) -> pathlib.Path:
        obj = work / (source.stem + ".o")
        subprocess.run([compiler, *FLAGS, *include, "-c", str(source), "-o", str(obj)], check=True,
                       capture_output=True, text=True)
        return obj

    try:
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            objects = list(pool.map(compile_one, sources))
        library = work / target.name
        subprocess.run([compiler, "-shared", "-o", str(library), *map(str, objects), f"-L{torch_dir / 'lib'}",
                        "-ltorch", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{torch_dir / 'lib'}"], check=True,
                       capture_output=True, text=True)
        os.replace(library, target)  # atomic: a concurrent build finds a whole library or none
    except subprocess.CalledProcessError as failed:
        raise RuntimeError(f"building the CUDA emulation failed:\n{' '.join(failed.cmd)}\n{failed.stderr}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_new_capsule = ctypes.pythonapi.PyCapsule_New
_new_capsule.restype = ctypes.py_object
_new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]

Handles = ctypes.c_void_p * 1


def _handles(tensors) -> ctypes.Array:
    """New AtenTensorHandles of `tensors` (None: a null handle), owned by the callee."""
    present = [t for t in tensors if t is not None]
    capsules = iter(torch._C._aoti.unsafe_alloc_void_ptrs_from_tensors(present))
    return (ctypes.c_void_p * max(1, len(tensors)))(
        *[None if t is None else _capsule_pointer(next(capsules), None) for t in tensors])


def _handle(tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(_handles([tensor])[0])


def _tensors(handles, count: int) -> list[torch.Tensor]:
    """Tensors that take over `count` handles returned by the library."""
    return torch._C._aoti.alloc_tensors_by_stealing_from_void_ptrs(
        [_new_capsule(handles[i], None, None) for i in range(count)])


class EmulatedOps:
    """torch.ops.clarena's CUDA ops, run by the emulated kernels on CPU tensors."""

    def __init__(self, library: ctypes.CDLL):
        self._lib = library
        self._lib.clarena_emulation_error.restype = ctypes.c_char_p

    def schedule(self, seed: int, multiprocessors: int = MULTIPROCESSORS) -> None:
        """The seed of the fiber and block order of the launches that follow."""
        major, minor = (int(part) for part in torch.__version__.split(".")[:2])
        self._lib.clarena_emulation_configure(ctypes.c_uint64(seed), multiprocessors, major, minor)

    def _call(self, name: str, *args) -> None:
        status = getattr(self._lib, name)(*args)
        if status:
            message = self._lib.clarena_emulation_error().decode()
            raise (ValueError if status == 1 else RuntimeError)(message)

    def percentile_mask(self, score, keep):
        out = Handles()
        self._call("clarena_emulated_percentile_mask", _handle(score), ctypes.c_double(keep), out)
        return _tensors(out, 1)[0]

    def percentile_masks(self, scores, keep, state):
        masks = (ctypes.c_void_p * max(1, len(scores)))()
        state_out = Handles()
        self._call("clarena_emulated_percentile_masks", _handles(scores), ctypes.c_int64(len(scores)),
                   ctypes.c_double(keep), _handle(state), masks, state_out)
        return _tensors(masks, len(scores)), _tensors(state_out, 1)[0]

    def parameter_measure(self, a, b, weight_shape, aggregation):
        out = Handles()
        shape = (ctypes.c_int64 * max(1, len(weight_shape)))(*weight_shape)
        self._call("clarena_emulated_parameter_measure", _handle(a), _handle(b), shape,
                   ctypes.c_int64(len(weight_shape)), aggregation.encode(), out)
        return _tensors(out, 1)[0]

    def scale_grad_by_measure_(self, grad, a, b, aggregation, rate, alpha, r):
        self._call("clarena_emulated_scale_grad_by_measure", _handle(grad), _handle(a),
                   _handle(b), aggregation.encode(), rate.encode(), ctypes.c_double(alpha), ctypes.c_double(r))

    def foreach_scale_grad_by_measure_(self, grads, a, b, aggregation, rate, alpha, r):
        rates = (ctypes.c_double * max(1, len(r)))(*r)
        self._call("clarena_emulated_foreach_scale_grad_by_measure", _handles(grads), _handles(a), _handles(b),
                   ctypes.c_int64(len(grads)), aggregation.encode(), rate.encode(), ctypes.c_double(alpha), rates,
                   ctypes.c_int64(len(r)))

    def unit_mask(self, input, mask, relu):
        out = Handles()
        self._call("clarena_emulated_unit_mask", _handle(input), _handle(mask), ctypes.c_bool(relu), out)
        return _tensors(out, 1)[0]

    def unit_mask_backward(self, grad, input, mask, relu):
        grad_input, grad_mask = Handles(), Handles()
        self._call("clarena_emulated_unit_mask_backward", _handle(grad), _handle(input),
                   _handle(mask), ctypes.c_bool(relu), grad_input, grad_mask)
        return _tensors(grad_input, 1)[0], _tensors(grad_mask, 1)[0]

    def masked_weight(self, weight, mask):
        out = Handles()
        self._call("clarena_emulated_masked_weight", _handle(weight), _handle(mask), out)
        return _tensors(out, 1)[0]

    def masked_weight_backward(self, grad, weight, mask):
        grad_weight, grad_mask = Handles(), Handles()
        self._call("clarena_emulated_masked_weight_backward", _handle(grad), _handle(weight),
                   _handle(mask), grad_weight, grad_mask)
        return _tensors(grad_weight, 1)[0], _tensors(grad_mask, 1)[0]

    def foreach_compensate_embedding_grad_(self, embeddings, grads, scale, s_max, clamp_threshold):
        self._call("clarena_emulated_foreach_compensate_embedding_grad", _handles(embeddings), _handles(grads),
                   ctypes.c_int64(len(grads)), ctypes.c_double(scale), ctypes.c_double(s_max),
                   ctypes.c_double(clamp_threshold))

    def self_test(self, which: int) -> list[int]:
        """Runs the harness's self-test kernel `which` (csrc/emulation/self_test_entries.cpp); the
        64 ints it writes, starting from -1."""
        out = (ctypes.c_int * 64)(*([-1] * 64))
        self._call("clarena_emulation_self_test", ctypes.c_int(which), out)
        return list(out)


@functools.cache
def emulated_ops() -> EmulatedOps:
    ops = EmulatedOps(ctypes.CDLL(str(_build())))
    ops.schedule(0)
    return ops
