"""`StoredMasks`: the per-task mask dict of HAT and WSN backbones (`backbone.masks`)."""

from typing import Any


def _task_key(task_id: Any) -> Any:
    # CLArena's AdaHAT and FG-AdaHAT read `masks[f"{task_id}"]` while `store_mask` keys by int.
    return int(task_id) if isinstance(task_id, str) and task_id.isdigit() else task_id


class StoredMasks(dict):
    """Masks by task id: stored under `int` keys, found by an int or its string (`masks["1"]`).

    Iteration, `state_dict` keys and `sorted(masks)` see the int keys only.
    """

    def __getitem__(self, task_id: Any) -> Any:
        return super().__getitem__(_task_key(task_id))

    def __setitem__(self, task_id: Any, masks: Any) -> None:
        super().__setitem__(_task_key(task_id), masks)

    def __delitem__(self, task_id: Any) -> None:
        super().__delitem__(_task_key(task_id))

    def __contains__(self, task_id: object) -> bool:
        return super().__contains__(_task_key(task_id))

    def get(self, task_id: Any, default: Any = None) -> Any:
        return super().get(_task_key(task_id), default)
