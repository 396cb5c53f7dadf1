"""Argument checks shared by the public ops (both paths), their fake kernels and the backbones.

They read only shapes, dtypes, devices and Python scalars, so they also run under torch.compile.
"""

from collections.abc import Iterable, Sequence

import torch

_FLOAT_OR_DOUBLE = (torch.float32, torch.float64)


def check_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"clarena: `{name}` must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_floating(name: str, tensor: torch.Tensor) -> None:
    check_tensor(name, tensor)
    if not tensor.is_floating_point():
        raise TypeError(f"clarena: `{name}` must be a floating-point tensor, got {tensor.dtype}")


def check_float_or_double(name: str, tensor: torch.Tensor) -> None:
    check_tensor(name, tensor)
    if tensor.dtype not in _FLOAT_OR_DOUBLE:
        raise TypeError(f"clarena: `{name}` must be float32 or float64, got {tensor.dtype}")


def check_like(name: str, tensor: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """`tensor` must share the dtype and device of `ref`."""
    check_tensor(name, tensor)
    if tensor.dtype != ref.dtype:
        raise TypeError(f"clarena: `{name}` must have the dtype of `{ref_name}` ({ref.dtype}), got {tensor.dtype}")
    if tensor.device != ref.device:
        raise ValueError(f"clarena: `{name}` must be on the device of `{ref_name}` ({ref.device}), got {tensor.device}")


def check_shape(name: str, tensor: torch.Tensor, shape: Sequence[int], what: str) -> None:
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"clarena: `{name}` must have the shape of {what} {tuple(shape)}, got {tuple(tensor.shape)}")


def check_fraction(name: str, value: float) -> float:
    """A fraction in (0, 1], as WSN's mask_percentage."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"clarena: `{name}` must be a float in (0, 1], got {type(value).__name__}")
    if not 0.0 < value <= 1.0:  # also refuses NaN
        raise ValueError(f"clarena: `{name}` must be in (0, 1], got {value}")
    return float(value)


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    if value not in choices:
        options = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"clarena: `{name}` must be one of {options}, got {value!r}")
