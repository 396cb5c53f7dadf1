"""Continual-learning benchmarks built from scikit-learn's handwritten digits (no download).

`sklearn.datasets.load_digits` holds 1,797 real 8x8 grey-level images of the digits 0-9. They are
split once into training and test images, stratified by digit and seeded, and every task draws from
that one split, so a test image is never trained on by any task.
"""

from dataclasses import dataclass

import numpy as np
import torch

BENCHMARKS = ("split", "permuted")
MAX_TASKS = {"split": 5, "permuted": 10}
TEST_FRACTION = 0.25
_PIXEL_MAX = 16.0  # load_digits stores grey levels 0..16


@dataclass(frozen=True)
class Task:
    """One task: its training and test images (flattened, in [0, 1]) and labels 0..num_classes-1."""

    name: str
    num_classes: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_benchmark(benchmark: str, num_tasks: int, seed: int) -> list[Task]:
    """Build `num_tasks` tasks of `benchmark`, deterministic given `seed`.

    - `split` (Split Digits): task t holds the digits 2t-2 and 2t-1, relabelled 0 and 1 (at most
      5 tasks); the usual task-incremental protocol, a head per task.
    - `permuted` (Permuted Digits): every task holds all 10 digits with its pixels shuffled by a
      fixed, seeded permutation; task 1 keeps the original pixel order (at most 10 tasks).
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    if not 1 <= num_tasks <= MAX_TASKS[benchmark]:
        raise ValueError(f"the {benchmark} benchmark has 1 to {MAX_TASKS[benchmark]} tasks, got {num_tasks}")
    x_train, x_test, y_train, y_test = _split_digits_once(seed)
    if benchmark == "split":
        return [_class_pair_task(t, x_train, y_train, x_test, y_test) for t in range(1, num_tasks + 1)]
    permutations = _pixel_permutations(num_tasks, x_train.shape[1], seed)
    return [
        _make_task(f"permutation {t}", 10, x_train[:, order], y_train, x_test[:, order], y_test)
        for t, order in enumerate(permutations, start=1)
    ]


def _split_digits_once(seed: int):
    # Imported here so `clarena-demo --help` answers without loading scikit-learn.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.data / _PIXEL_MAX).astype(np.float32)
    return train_test_split(
        images, digits.target, test_size=TEST_FRACTION, stratify=digits.target, random_state=seed
    )


def _class_pair_task(t: int, x_train, y_train, x_test, y_test) -> Task:
    first = 2 * (t - 1)
    in_train = (y_train == first) | (y_train == first + 1)
    in_test = (y_test == first) | (y_test == first + 1)
    return _make_task(
        f"digits {first}/{first + 1}",
        2,
        x_train[in_train],
        y_train[in_train] - first,
        x_test[in_test],
        y_test[in_test] - first,
    )


def _pixel_permutations(num_tasks: int, num_pixels: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.arange(num_pixels)] + [rng.permutation(num_pixels) for _ in range(num_tasks - 1)]


def _make_task(name: str, num_classes: int, x_train, y_train, x_test, y_test) -> Task:
    return Task(
        name=name,
        num_classes=num_classes,
        x_train=torch.from_numpy(np.ascontiguousarray(x_train)),
        y_train=torch.from_numpy(np.asarray(y_train, dtype=np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=torch.from_numpy(np.asarray(y_test, dtype=np.int64)),
    )
