"""Every clarena op with a CPU kernel also has a CUDA kernel, in the CUDA build installed here.

The op list comes from the dispatcher's registrations, so a new op is checked without editing this
file. Runs without a GPU (loading and registering need none). Exits non-zero on a missing kernel.
"""

import sys
import warnings

import torch

warnings.simplefilter("error", RuntimeWarning)  # clarena warns (not fails) when a library does not load
import clarena  # noqa: E402

if torch.version.cuda is None:
    sys.exit("check_cuda_kernels: this torch is a CPU build; the check needs a CUDA build")
if "clarena_backbones._C_cuda" not in sys.modules:
    sys.exit("check_cuda_kernels: clarena_backbones._C_cuda is not loaded (is this the CUDA wheel?)")

ops = sorted(name for name in torch._C._dispatch_get_all_op_names() if name.startswith("clarena::"))
kernels = {name: [key for key in ("CPU", "CUDA") if torch._C._dispatch_has_kernel_for_dispatch_key(name, key)]
           for name in ops}
missing = [name for name, keys in kernels.items() if "CPU" in keys and "CUDA" not in keys]
for name, keys in kernels.items():
    print(f"  {name:42s} {' '.join(keys) or 'composite'}")
if not any("CUDA" in keys for keys in kernels.values()):
    sys.exit(f"check_cuda_kernels: no CUDA kernel registered by {clarena.__file__}")
if missing:
    sys.exit(f"check_cuda_kernels: no CUDA kernel for {', '.join(missing)}")
print(f"check_cuda_kernels: {len(ops)} ops, every CPU kernel has its CUDA kernel")
