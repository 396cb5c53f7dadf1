"""Build clarena's native operator libraries on the LibTorch stable ABI.

  clarena_backbones._C       the op schemas and the CPU kernels (always built)
  clarena_backbones._C_cuda  the CUDA kernels (built with CUDA); imported only into a torch built for
                             the same CUDA major, since the library needs that major's CUDA runtime
                             (its CUDA version is written beside it, in _C_cuda_version.txt)

Both target the stable ABI of torch 2.13 (TORCH_TARGET_VERSION) and the Python 3.10 limited
API, so one build loads into every torch from 2.13 on and every Python from 3.10 on.

Environment switches (the resolved configuration is printed at build time):
  FORCE_CUDA=1            build the CUDA kernels even when no GPU is visible
  FORCE_ONLY_CPU=1        never build the CUDA kernels
  TORCH_CUDA_ARCH_LIST    CUDA targets (default "8.0;9.0+PTX": A100, H100, PTX for newer GPUs)
  CUDA_HOME               the CUDA toolkit (default: asked from the nvcc on PATH)
  DEBUG=1                 -O0 -g instead of -O3
  NVCC_FLAGS              extra nvcc flags
"""

import glob
import os
import re
import shutil
import subprocess
import sys

import torch
from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(ROOT, "csrc")
DEFAULT_CUDA_ARCH_LIST = "8.0;9.0+PTX"
CUDA_MODULE = "clarena_backbones._C_cuda"
# Beside the CUDA module: the CUDA version it was built for, read by clarena before it loads the
# module (clarena_backbones/ops/native.py), since only a torch of the same CUDA major can load it.
CUDA_VERSION_FILE = "_C_cuda_version.txt"
# The oldest torch the libraries load into: 2.13 is the first stable ABI with the current stream's
# native handle (no torch_cuda shims needed) and with set_python_module for the op fragments.
TORCH_TARGET_VERSION = "0x020d000000000000"


def env_flag(name: str) -> bool:
    return os.getenv(name, "0").strip().lower() in ("1", "true", "yes", "on")


def toolkit_from_nvcc() -> str | None:
    """The CUDA toolkit that the `nvcc` on PATH belongs to, asked from nvcc itself.

    torch takes the folder above the nvcc it finds on PATH, which is wrong when that nvcc is a
    wrapper script outside the toolkit (then linking fails with `cannot find -lcudart`).
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    try:
        dry_run = subprocess.run([nvcc, "--dryrun", "-x", "cu", "-E", os.devnull], capture_output=True, text=True,
                                 timeout=60)
    except (OSError, subprocess.SubprocessError):
        dry_run = None
    match = re.search(r"^#\$ TOP=(.+)$", dry_run.stderr if dry_run else "", re.MULTILINE)
    if match is None:
        sys.exit(f"clarena: could not ask {nvcc} where its CUDA toolkit is; set CUDA_HOME to the toolkit's root "
                 "(the folder holding bin/nvcc and lib64/libcudart.so)")
    return os.path.realpath(match.group(1).strip())


def resolve_cuda_home() -> None:
    """Sets CUDA_HOME before torch.utils.cpp_extension reads it at import."""
    if os.getenv("CUDA_HOME") or os.getenv("CUDA_PATH"):
        return
    home = toolkit_from_nvcc()
    if home is not None:
        os.environ["CUDA_HOME"] = home


if not env_flag("FORCE_ONLY_CPU"):
    resolve_cuda_home()

from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def resolve_cuda() -> tuple[bool, str]:
    if env_flag("FORCE_ONLY_CPU"):
        return False, "FORCE_ONLY_CPU=1"
    if env_flag("FORCE_CUDA"):
        if CUDA_HOME is None or torch.version.cuda is None:
            sys.exit("clarena: FORCE_CUDA=1 needs a CUDA build of torch and the CUDA toolkit (nvcc on PATH or "
                     f"CUDA_HOME); found torch {torch.__version__}, CUDA_HOME={CUDA_HOME}")
        if not glob.glob(os.path.join(CUDA_HOME, "lib64", "libcudart.so*")):
            sys.exit(f"clarena: no lib64/libcudart.so under CUDA_HOME={CUDA_HOME}; set CUDA_HOME to the CUDA "
                     "toolkit's root (the folder holding bin/nvcc and lib64/libcudart.so)")
        return True, "FORCE_CUDA=1"
    if CUDA_HOME is not None and torch.version.cuda is not None and torch.cuda.is_available():
        return True, "CUDA torch, nvcc and a GPU found"
    return False, "no CUDA torch, nvcc or GPU"


def sources(pattern: str) -> list[str]:
    """Files under csrc/ matching `pattern`, relative to setup.py (as setuptools wants)."""
    return [os.path.relpath(path, ROOT) for path in sorted(glob.glob(os.path.join(CSRC, pattern), recursive=True))]


def package_version() -> str:
    with open(os.path.join(ROOT, "clarena_backbones", "__init__.py")) as init:
        return re.search(r'^__version__ = "(.+)"$', init.read(), re.MULTILINE).group(1)


def get_extensions(with_cuda: bool, reason: str) -> list:
    debug = env_flag("DEBUG")
    opt = ["-O0", "-g"] if debug else ["-O3"]
    target = [f"-DTORCH_TARGET_VERSION={TORCH_TARGET_VERSION}"]
    # No contraction into fused multiply-adds: the element math must round like the PyTorch
    # reference on every CPU and on the GPU (the one fma torch does use is explicit).
    cxx = opt + target + ["-ffp-contract=off"]
    cpu_sources = [path for path in sources("ops/**/*.cpp") if f"{os.sep}cuda{os.sep}" not in path]
    extensions = [
        CppExtension("clarena_backbones._C", sources("module.cpp") + cpu_sources, include_dirs=[CSRC],
                     extra_compile_args={"cxx": cxx}, extra_link_args=["-g"] if debug else [], py_limited_api=True)
    ]
    if with_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCH_LIST)
        nvcc = opt + target + ["--expt-relaxed-constexpr", "-fmad=false"] + os.getenv("NVCC_FLAGS", "").split()
        extensions.append(
            CUDAExtension(CUDA_MODULE, sources("module_cuda.cpp") + sources("ops/**/*.cu"), include_dirs=[CSRC],
                          extra_compile_args={"cxx": cxx, "nvcc": nvcc}, py_limited_api=True)
        )

    print("clarena build configuration:")
    print(f"  torch            {torch.__version__} (CUDA {torch.version.cuda}); stable ABI target 2.13")
    print(f"  CUDA kernels     {'yes' if with_cuda else 'no'} ({reason})")
    if with_cuda:
        print(f"  CUDA_HOME        {CUDA_HOME}")
        print(f"  CUDA arch list   {os.environ['TORCH_CUDA_ARCH_LIST']}")
    print(f"  optimisation     {' '.join(opt)}")
    return extensions


PTH_FILE = "clarena_backbones.pth"


class build_ext_with_cuda_version(BuildExtension):
    """Also write CUDA_VERSION_FILE beside the CUDA module: into the build folder, which the wheel is
    made from, and into the sources when the extensions are copied there (--inplace, or pip -e)."""

    def run(self) -> None:
        super().run()
        if CUDA_MODULE not in (ext.name for ext in self.extensions):
            return
        folders = {os.path.join(self.build_lib, *CUDA_MODULE.split(".")[:-1])}
        if self.inplace:
            folders.add(os.path.dirname(self.get_ext_fullpath(CUDA_MODULE)))
        for folder in folders:
            with open(os.path.join(folder, CUDA_VERSION_FILE), "w") as file:
                file.write(torch.version.cuda + "\n")


class build_py_with_pth(build_py):
    """Also put `clarena_backbones.pth` at the top of site-packages: at interpreter start it installs
    the finder that serves `clarena.backbones` from `clarena_backbones` (`_clarena_backbones_hook`)."""

    def run(self) -> None:
        super().run()
        # An editable wheel is assembled from the install directory, not from build_lib.
        target = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        self.copy_file(os.path.join(ROOT, PTH_FILE), os.path.join(target, PTH_FILE), preserve_mode=False)


setup(
    version=package_version(),
    ext_modules=get_extensions(*resolve_cuda()),
    cmdclass={"build_ext": build_ext_with_cuda_version, "build_py": build_py_with_pth},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
