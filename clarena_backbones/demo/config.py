"""The demo's hyperparameters, in one place so the command line, the methods and the report agree."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DemoConfig:
    benchmark: str = "split"
    num_tasks: int = 5
    # Widths of the backbone's layers; the last is the feature size fed to the heads.
    hidden: tuple[int, ...] = (256, 256)
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 0.01
    seed: int = 0
    # HAT (CLArena's configs/cl_algorithm/hat.yaml).
    s_max: float = 400.0
    clamp_threshold: float = 50.0
    mask_sparsity_reg_factor: float = 0.1
    # WSN: the fraction of each layer's weights a task selects.
    mask_percentage: float = 0.5

    def as_dict(self) -> dict:
        return asdict(self)
