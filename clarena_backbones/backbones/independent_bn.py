"""The BatchNorm-selection hook `get_bn`, and HAT's 'independent' BatchNorm behind it.

Shared BatchNorm (every plain and WSN network, HAT's 'shared') uses the live modules in every
stage. With `batch_normalization='independent'`, a HAT backbone trains its live BN modules (e.g.
`fc_bn`, or `conv_bn1`, `conv_bn2` of a ResNet block) for the current task, stores a deep copy
in the matching ModuleDict (`fc_bns[str(task_id)]`, ...) at the task's end, and tests each task
with its own copy. The copies are ordinary submodules, so `state_dict` holds them; the load hook
creates the copies a fresh backbone has not built yet.
"""

from copy import deepcopy

from torch import nn

from clarena_backbones.backbones import state_hooks

TEST_STAGES = ("test", "unlearning_test")


class SharedBatchNorm:
    """Mixin giving a network `get_bn`, its one answer to "which BatchNorm modules run in this stage"."""

    # the live BN module of each BatchNorm slot (None without BatchNorm), set by `__init__`
    _live_bns: tuple[nn.Module, ...] | None = None

    def get_bn(self, stage: str | None, test_task_id: int | None) -> tuple[nn.Module, ...] | None:
        """The BN module of each BatchNorm slot for `stage` (None without BatchNorm)."""
        return self._live_bns


class IndependentBatchNorm:
    """Mixin for HAT backbones, overriding `get_bn`; `_live_bn_names` lists the live BN attributes
    it copies per task.

    (Not a `SharedBatchNorm` subclass: it precedes the mask base in a HAT class's bases, and a
    common base would pull the plain network's methods ahead of the mask base's.)
    """

    _live_bn_names: tuple[str, ...] = ()

    def _setup_independent_bn(self, live_bn_names: tuple[str, ...]) -> None:
        """Call at the end of `__init__`: creates the per-task dicts and the pristine BN states."""
        self._live_bn_names = live_bn_names
        self._live_bns = tuple(getattr(self, name) for name in live_bn_names) if self.batch_normalization else None
        if self.batch_normalization == "independent":
            for name in live_bn_names:
                setattr(self, f"{name}s", nn.ModuleDict())
                setattr(self, f"original_{name}_state_dict", deepcopy(getattr(self, name).state_dict()))

    def _independent(self) -> bool:
        return self.batch_normalization == "independent"

    def setup_task_id(self, task_id: int) -> None:
        """Make `task_id` current; with independent BN, give it a BN copy if it has none yet."""
        super().setup_task_id(task_id)
        if self._independent():
            for name in self._live_bn_names:
                copies = getattr(self, f"{name}s")
                if f"{task_id}" not in copies:
                    copies[f"{task_id}"] = deepcopy(getattr(self, name))

    def initialize_independent_bn(self) -> None:
        """Reset the live BN modules to their initial state (called at each task start)."""
        if self._independent():
            for name in self._live_bn_names:
                getattr(self, name).load_state_dict(getattr(self, f"original_{name}_state_dict"))

    def store_bn(self) -> None:
        """Keep a copy of the live BN modules as the current task's (called at each task end)."""
        if self._independent():
            for name in self._live_bn_names:
                getattr(self, f"{name}s")[f"{self.task_id}"] = deepcopy(getattr(self, name))

    def get_bn(self, stage: str | None, test_task_id: int | None) -> tuple[nn.Module, ...] | None:
        """The BN module of each live name for `stage` (None without BN).

        Per-task copies serve the test stages only (the task `test_task_id`, else the current
        one); training and validation use the live modules.
        """
        if self._independent() and stage in TEST_STAGES:
            task_key = f"{self.task_id if test_task_id is None else test_task_id}"
            return tuple(getattr(self, f"{name}s")[task_key] for name in self._live_bn_names)
        return self._live_bns

    def _per_task_module_factories(self) -> state_hooks.ModuleFactories:
        factories = super()._per_task_module_factories()
        if self._independent():
            for name in self._live_bn_names:
                factories[f"{name}s"] = lambda task_key, name=name: deepcopy(getattr(self, name))
        return factories
