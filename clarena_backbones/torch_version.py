"""The torch versions this package has been tested with, and the warning for a newer one.

The native libraries use only the LibTorch stable ABI of torch 2.13, which later releases keep
loading, so the dependency has no upper bound. A release newer than any tested one most likely
works; the warning says that it has not been tested.
"""

import functools
import warnings

from torch.torch_version import Version

OLDEST_SUPPORTED = "2.13"
NEWEST_TESTED = "2.14.1"


@functools.cache
def warn_if_untested(version: str) -> bool:
    """Warn (once per `version`) if torch `version` is newer than `NEWEST_TESTED`; return whether it is.

    Only the release numbers count: a local label (`+cu130`) is the tested release.
    """
    newer = Version(version).release > Version(NEWEST_TESTED).release
    if newer:
        warnings.warn(
            f"clarena-backbones was tested with torch {OLDEST_SUPPORTED} to {NEWEST_TESTED}; this is torch "
            f"{version}. Its native libraries use the LibTorch stable ABI, which newer releases keep "
            "loading, so it should work; please report anything that does not.",
            RuntimeWarning,
            stacklevel=2,
        )
    return newer
