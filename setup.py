"""Build clarena's native operator library, `clarena_backbones._C`, and ship `clarena_backbones.pth`.

Environment switches (the resolved configuration is printed at build time):
  FORCE_CUDA=1            build the CUDA kernels even when no GPU is visible
  FORCE_ONLY_CPU=1        never build the CUDA kernels
  TORCH_CUDA_ARCH_LIST    CUDA targets, e.g. "8.0;9.0+PTX" (default here: "8.0;9.0")
  DEBUG=1                 -O0 -g instead of -O3
"""

import glob
import importlib.util
import os
import sys

import torch
from setuptools import setup
from setuptools.command.build_py import build_py
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(ROOT, "csrc")
DEFAULT_CUDA_ARCH_LIST = "8.0;9.0"


def env_flag(name: str) -> bool:
    return os.getenv(name, "0").strip().lower() in ("1", "true", "yes", "on")


def resolve_cuda() -> tuple[bool, str]:
    if env_flag("FORCE_ONLY_CPU"):
        return False, "FORCE_ONLY_CPU=1"
    if env_flag("FORCE_CUDA"):
        if CUDA_HOME is None or torch.version.cuda is None:
            sys.exit("FORCE_CUDA=1 needs a CUDA build of torch and nvcc (CUDA_HOME); found "
                     f"torch {torch.__version__}, CUDA_HOME={CUDA_HOME}")
        return True, "FORCE_CUDA=1"
    if CUDA_HOME is not None and torch.version.cuda is not None and torch.cuda.is_available():
        return True, "CUDA torch, nvcc and a GPU found"
    return False, "no CUDA torch, nvcc or GPU"


def openmp_flags() -> list[str]:
    # Without -fopenmp, at::parallel_for compiled into an extension runs on one thread.
    if sys.platform == "darwin" or "OpenMP" not in torch.__config__.parallel_info():
        return []
    return ["-fopenmp"]


def nvidia_wheel_includes() -> list[str]:
    # The CUDA toolkit here lacks the cuBLAS/cuSPARSE headers that ATen/cuda/CUDAContext.h
    # includes; the nvidia wheels installed beside a CUDA torch ship them.
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    found = []
    for base in spec.submodule_search_locations:
        for include in sorted(glob.glob(os.path.join(base, "*", "include"))):
            if glob.glob(os.path.join(include, "cublas*.h")) or glob.glob(os.path.join(include, "cusparse*.h")):
                found.append(include)
    return found


def sources_matching(*patterns: str) -> list[str]:
    # setuptools wants source paths relative to setup.py.
    found = []
    for pattern in patterns:
        found += sorted(glob.glob(os.path.join(CSRC, pattern)))
    return [os.path.relpath(path, ROOT) for path in found]


def get_extensions():
    with_cuda, reason = resolve_cuda()
    debug = env_flag("DEBUG")
    opt = ["-O0", "-g"] if debug else ["-O3"]
    omp = openmp_flags()

    sources = sources_matching("*.cpp", "ops/*.cpp", "ops/cpu/*.cpp")
    include_dirs = [CSRC]
    # No contraction into fused multiply-adds: the element math must round like the PyTorch
    # reference on every CPU and on the GPU (the one fma torch does use is explicit).
    extra_compile_args = {"cxx": opt + omp + ["-ffp-contract=off"]}
    extension = CppExtension
    if with_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCH_LIST)
        sources += sources_matching("ops/cuda/*.cu")
        include_dirs += nvidia_wheel_includes()
        extra_compile_args["nvcc"] = opt + ["--expt-relaxed-constexpr", "-fmad=false"]
        extra_compile_args["nvcc"] += os.getenv("NVCC_FLAGS", "").split()
        extension = CUDAExtension

    print("clarena build configuration:")
    print(f"  torch            {torch.__version__} (CUDA {torch.version.cuda})")
    print(f"  CUDA kernels     {'yes' if with_cuda else 'no'} ({reason})")
    if with_cuda:
        print(f"  CUDA_HOME        {CUDA_HOME}")
        print(f"  CUDA arch list   {os.environ['TORCH_CUDA_ARCH_LIST']}")
        print(f"  extra includes   {include_dirs[1:]}")
    print(f"  OpenMP           {'yes' if omp else 'no'}")
    print(f"  optimisation     {' '.join(opt)}")

    return [
        extension(
            "clarena_backbones._C",
            sources,
            include_dirs=include_dirs,
            extra_compile_args=extra_compile_args,
            extra_link_args=omp + (["-g"] if debug else []),
            py_limited_api=True,
        )
    ]


PTH_FILE = "clarena_backbones.pth"


class build_py_with_pth(build_py):
    """Also put `clarena_backbones.pth` at the top of site-packages: at interpreter start it installs
    the finder that serves `clarena.backbones` from `clarena_backbones` (`_clarena_backbones_hook`)."""

    def run(self) -> None:
        super().run()
        # An editable wheel is assembled from the install directory, not from build_lib.
        target = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        self.copy_file(os.path.join(ROOT, PTH_FILE), os.path.join(target, PTH_FILE), preserve_mode=False)


setup(
    ext_modules=get_extensions(),
    cmdclass={"build_ext": BuildExtension, "build_py": build_py_with_pth},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
