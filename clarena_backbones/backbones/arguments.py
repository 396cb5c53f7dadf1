"""Constructor-argument handling shared by every backbone.

CLArena silently swallows any keyword it does not know (its classes forward `**kwargs` to a base
that drops them), so typos and the British `batch_normalisation` of its own documentation were
ignored. Here the alias is honoured, the pipeline's `disable_unlearning` is still accepted
quietly, and anything else is reported once with a warning naming it.
"""

import warnings
from typing import Any

# Keywords the CLArena pipeline passes to every backbone; accepted without a warning.
SILENT_KEYWORDS = frozenset({"disable_unlearning"})

# Accepted values of the HAT family's `batch_normalization` (False is read as None).
HAT_BATCH_NORMALIZATION_MODES = (None, "shared", "independent")


def warn_unknown_keywords(owner: type, kwargs: dict[str, Any]) -> None:
    """Warn (UserWarning) about every keyword that reached the base class unused."""
    for name in kwargs:
        if name not in SILENT_KEYWORDS:
            warnings.warn(
                f"{owner.__name__} got an unknown keyword argument `{name}`; it is ignored.",
                UserWarning,
                stacklevel=4,
            )


def batch_normalization_argument(value: Any, default: Any, kwargs: dict[str, Any]) -> Any:
    """Resolve `batch_normalization` with its British alias `batch_normalisation` (popped from kwargs).

    The alias wins over the default; giving both spellings with different values is an error.
    """
    if "batch_normalisation" not in kwargs:
        return value
    alias = kwargs.pop("batch_normalisation")
    if value != default and value != alias:
        raise ValueError(
            "`batch_normalization` and its alias `batch_normalisation` were both given, with "
            f"different values ({value!r} and {alias!r}); give only one."
        )
    return alias


def hat_batch_normalization(value: Any) -> str | None | bool:
    """Validate a HAT-family `batch_normalization`: None/False (no BN), 'shared' or 'independent'.

    CLArena took a bool `True` and then crashed at the first forward; here it is refused upfront.
    """
    if value is False:
        return value
    if value not in HAT_BATCH_NORMALIZATION_MODES:
        raise ValueError(
            "`batch_normalization` of a HAT backbone must be one of None, 'shared', 'independent' "
            f"(False is read as None); got {value!r}."
        )
    return value
