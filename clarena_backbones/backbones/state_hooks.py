"""Per-task state in `state_dict`: stored masks and per-task module copies.

CLArena keeps stored masks in plain dicts (lost by `state_dict`) and creates per-task BatchNorm
copies only while training, so a checkpoint could not be tested in a fresh process. Backbones
that install these hooks

* save their stored masks under the reserved key prefix `stored_masks.` (tensors only, so
  `torch.load(weights_only=True)` reads them), through `_stored_mask_state()`;
* before loading, pop those keys into `_load_stored_mask_state()` and create every per-task
  module (`fc_bns.<task>`, `conv_bn1s.<task>`, `backup_backbones.<task>`, ...) named by the
  state dict but not yet built, through `_per_task_module_factories()`.

A CLArena state dict has neither, so it loads with `strict=True` as before.
"""

from collections.abc import Callable

from torch import Tensor, nn

STORED_MASKS = "stored_masks."

# name of an nn.ModuleDict attribute -> function building the module of one task (key: str task id)
ModuleFactories = dict[str, Callable[[str], nn.Module]]


class PerTaskState:
    """What a backbone that installs the hooks starts from: no per-task modules to build."""

    def _per_task_module_factories(self) -> ModuleFactories:
        return {}


def install(module: nn.Module) -> None:
    """Register the save hook and the load pre-hook on `module`."""
    module._register_state_dict_hook(_save_stored_state)
    module._register_load_state_dict_pre_hook(_load_stored_state, with_module=True)


def _save_stored_state(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key, tensor in module._stored_mask_state().items():
        state_dict[prefix + STORED_MASKS + key] = tensor


def _load_stored_state(
    module: nn.Module,
    state_dict: dict,
    prefix: str,
    local_metadata: dict,
    strict: bool,
    missing_keys: list,
    unexpected_keys: list,
    error_msgs: list,
) -> None:
    head = prefix + STORED_MASKS
    stored: dict[str, Tensor] = {}
    for key in [key for key in state_dict if key.startswith(head)]:
        stored[key[len(head) :]] = state_dict.pop(key)
    if stored:
        module._load_stored_mask_state(stored)
    for dict_name, factory in module._per_task_module_factories().items():
        head = prefix + dict_name + "."
        task_keys = {key[len(head) :].split(".", 1)[0] for key in state_dict if key.startswith(head)}
        if not task_keys:
            continue
        container = getattr(module, dict_name, None)
        if container is None:
            container = nn.ModuleDict()
            setattr(module, dict_name, container)
        for task_key in sorted(task_keys, key=_task_order):
            if task_key not in container:
                container[task_key] = factory(task_key)


def _task_order(task_key: str) -> tuple[int, str]:
    return (int(task_key), "") if task_key.isdigit() else (0, task_key)
