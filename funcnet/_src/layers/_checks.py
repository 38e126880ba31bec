"""Argument checks and initializer defaults that the layers share (private).

A constructor checks its arguments before it builds anything, so a bad value
fails at the line that wrote it, with the layer's name, what was expected and
what arrived. The checks live here once so that every layer words the same
mistake the same way.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax

Initializer = Callable[..., jax.Array]
"""``init(key, shape, dtype) -> array``, as the functions of ``jax.nn.initializers``."""

GLOROT_UNIFORM: Initializer = jax.nn.initializers.glorot_uniform()
"""Keras's default for weights; fans count the receptive field (``in_axis=-2``, ``out_axis=-1``)."""

IMPLS = ("auto", "im2col", "native")
"""The values of the convolution and pooling layers' ``impl`` argument."""


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (a NumPy one too), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(layer: str, what: str, value: Any) -> int:
    """``value`` as an int, raising unless it is a positive integer.

    Example:
        >>> positive_int("Dense", "units", 3)
        3
    """
    if not is_int(value) or value < 1:
        raise ValueError(f"{layer}: {what} must be a positive integer, got {value!r}.")
    return int(value)


def optional_positive_int(layer: str, what: str, value: Any) -> int | None:
    """``value`` as an int, or None; raising unless it is one of those."""
    if value is None:
        return None
    if not is_int(value) or value < 1:
        raise ValueError(f"{layer}: {what} must be a positive integer or None, got {value!r}.")
    return int(value)


def check_flags(layer: str, **flags: Any) -> None:
    """Raises unless every flag is True or False (a truthy string is a typo, not a yes)."""
    for flag, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{layer}: {flag} must be True or False, got {value!r}.")


def check_impl(layer: str, impl: Any) -> str:
    """The convolution or pooling implementation ``impl``: "auto", "im2col" or "native"."""
    if not isinstance(impl, str) or impl not in IMPLS:
        raise ValueError(
            f"{layer}: impl must be 'auto', 'im2col' or 'native', got {impl!r}. 'auto' (the "
            "default) uses im2col (shifted slices) on the CPU where it was measured faster and "
            "the native XLA operation elsewhere; the other two force one implementation."
        )
    return impl
