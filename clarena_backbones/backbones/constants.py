"""CLArena's `clarena.backbones.constants`: where torchvision's ResNet-18 weights go in a ResNet-18.

Each mapping takes every key of torchvision's `resnet18` state dict to the key of this package's
(and CLArena's) ResNet-18 that receives it, or None for entries not loaded (the classifier, the
shortcut BatchNorm, and for the HAT version every BatchNorm). They are derived from
`torchvision_resnet18_key`, the rule `pretrained_weights` loads by.
"""

from clarena_backbones.backbones.resnet import torchvision_resnet18_key

__all__ = ["RESNET18_STATE_DICT_MAPPING", "HATMASKRESNET18_STATE_DICT_MAPPING"]

_BATCH_NORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _torchvision_resnet18_keys() -> list[str]:
    """The keys of torchvision's `resnet18().state_dict()`, in its order."""
    keys = ["conv1.weight", *(f"bn1.{entry}" for entry in _BATCH_NORM)]
    for stage in range(1, 5):
        for block in range(2):
            head = f"layer{stage}.{block}"
            for index in (1, 2):
                keys += [f"{head}.conv{index}.weight", *(f"{head}.bn{index}.{entry}" for entry in _BATCH_NORM)]
            if stage > 1 and block == 0:
                keys += [f"{head}.downsample.0.weight", *(f"{head}.downsample.1.{entry}" for entry in _BATCH_NORM)]
    return [*keys, "fc.weight", "fc.bias"]


RESNET18_STATE_DICT_MAPPING: dict[str, str | None] = {
    key: torchvision_resnet18_key(key, batch_norm=True) for key in _torchvision_resnet18_keys()
}
HATMASKRESNET18_STATE_DICT_MAPPING: dict[str, str | None] = {
    key: torchvision_resnet18_key(key, batch_norm=False) for key in _torchvision_resnet18_keys()
}
