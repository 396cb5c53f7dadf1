"""Keyword renames that keep the old name working for one release, with a DeprecationWarning."""

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """Decorate a function whose keyword `old` is now `new` (`renamed_keywords(old="new")`).

    A call with the old keyword warns and runs as if the new one were given; giving both is a
    TypeError naming both.
    """

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"clarena: {function.__qualname__}() got both `{old}` and `{new}`; pass `{new}` only")
                warnings.warn(
                    f"clarena: the `{old}` keyword of {function.__qualname__}() is now `{new}`; "
                    "the old name will be removed in the next release.",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
