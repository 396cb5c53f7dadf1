import _clarena_backbones_hook  # noqa: F401  (the tests import the public clarena.* names)
import pytest
import torch


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
