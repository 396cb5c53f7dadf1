"""Every workload of the suite, by (group, impl label): the families collected in one table.

Each family module defines its groups and builders and imports only `common`, or a family below
it (`clarena_workloads` builds on `step_workloads` and `epoch_workloads`); nothing imports this
module but the runners (`report.py`, `op_counts.py`, `cuda_report.py`) and the targets' test.
A builder returns a `common.Workload`; it may raise (CLArena missing, a backbone CLArena cannot
build), and the runners then report that row as skipped.
"""

from __future__ import annotations

from collections.abc import Callable

import clarena_workloads
import epoch_workloads
import gate_workloads
import hat_workloads
import step_workloads
from common import DTYPE, KEEP, Workload, build_backbone  # noqa: F401  (cuda_report.py reads them here)
from gate_workloads import PERCENTILE_SIZES  # noqa: F401
from hat_workloads import MEASURE_SHAPES  # noqa: F401

FAMILIES = (gate_workloads, hat_workloads, step_workloads, epoch_workloads, clarena_workloads)


def all_workloads() -> dict[tuple[str, str], Callable[[], Workload]]:
    """(group, impl label) -> builder, for every benchmark of the suite."""
    table: dict[tuple[str, str], Callable[[], Workload]] = {}
    for family in FAMILIES:
        table.update(family.all_workloads())
    return table
