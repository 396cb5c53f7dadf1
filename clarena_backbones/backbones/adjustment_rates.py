"""`AdjustmentRates`: layer name -> adjustment-rate tensor, each built when first read."""

from collections.abc import Callable, Iterator, Mapping

from torch import Tensor


class AdjustmentRates(Mapping[str, Tensor]):
    """A read-only mapping whose tensors are built on first access, then kept.

    The rates a training step scales its gradients by are weight-sized; callers such as CLArena's
    metric callbacks read them every few steps at most, so building them every step is wasted
    work. Each builder must depend only on tensors that are not modified afterwards.
    """

    def __init__(self) -> None:
        self._builders: dict[str, Callable[[], Tensor]] = {}
        self._built: dict[str, Tensor] = {}

    def add(self, name: str, build: Callable[[], Tensor]) -> None:
        self._builders[name] = build

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._built:
            self._built[name] = self._builders[name]()
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)
