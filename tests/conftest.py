import sys

import _clarena_backbones_hook  # noqa: F401  (the tests import the public clarena.* names)
import pytest
import torch
from mammoth_helpers import BOUND_MODULES, STAND_IN


def pytest_collection_modifyitems(config, items):
    # CUDA cases stay visible in the report as skips instead of disappearing.
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def single_thread():
    """Run a test on one intra-op thread (restored afterwards).

    The backbones' results do not depend on threading (the ops' own tests cover threaded
    kernels); on a shared two-core machine one thread avoids OpenMP spin contention.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mammoth():
    """The stand-in imported and registered with: `(backbone, models)` packages; removed afterwards."""
    import clarena.mammoth

    sys.path.insert(0, str(STAND_IN))
    try:
        import backbone
        import models

        clarena.mammoth.register()
        yield backbone, models
    finally:
        sys.path.remove(str(STAND_IN))
        for name in BOUND_MODULES:
            sys.modules.pop(name, None)
