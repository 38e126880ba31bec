"""Layers that only change an input's shape: Flatten and Reshape."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet._src.core import (
    InputShape,
    Layer,
    Params,
    Shape,
    State,
    check_input_shape,
    shape_error,
)


def Flatten() -> Layer:
    """Flattens every axis but the first (batch): ``[B, d1, d2, ...] -> [B, d1*d2*...]``.

    Example:
        >>> import jax, funcnet as fn
        >>> fn.Flatten().init(jax.random.key(0), (None, 4, 4, 3))[0]
        (None, 48)
    """
    name = "Flatten"

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        del key
        shape = check_input_shape(name, input_shape, min_rank=1)
        features = shape[1:]
        if None in features:
            raise shape_error(name, f"every non-batch dimension must be known, got {shape}.")
        return (shape[0], math.prod(features)), {}, {}  # type: ignore[arg-type]

    def apply(
        params: Params,
        state: State,
        x: ArrayLike,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del params, key, train
        x = jnp.asarray(x)
        if x.ndim < 1:
            raise shape_error(name, f"expected an input with a batch axis, got a scalar {x.shape}.")
        return x.reshape(x.shape[0], -1), state

    return Layer(init, apply, name)


def Reshape(target_shape: Sequence[int]) -> Layer:
    """Reshapes each example (the batch axis is kept) to ``target_shape``.

    One entry of ``target_shape`` may be -1, inferred from the rest.

    Example:
        >>> import jax, funcnet as fn
        >>> fn.Reshape((4, -1)).init(jax.random.key(0), (None, 12))[0]
        (None, 4, 3)
    """
    name = "Reshape"
    target = tuple(int(d) for d in target_shape)
    if target.count(-1) > 1 or any(d < -1 or d == 0 for d in target):
        raise ValueError(
            f"{name}: target_shape must hold positive sizes and at most one -1, got {target_shape!r}."
        )

    def resolve(shape):
        features = shape[1:]
        if None in features:
            raise shape_error(name, f"every non-batch dimension must be known, got {shape}.")
        size = math.prod(features)
        known = math.prod(d for d in target if d != -1)
        if (-1 in target and size % known) or (-1 not in target and size != known):
            raise shape_error(
                name,
                f"cannot reshape examples of shape {features} ({size} values) "
                f"to {target} ({known} values{' times an inferred size' if -1 in target else ''}).",
            )
        return tuple(size // known if d == -1 else d for d in target)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        del key
        shape = check_input_shape(name, input_shape, min_rank=1)
        return (shape[0], *resolve(shape)), {}, {}

    def apply(
        params: Params,
        state: State,
        x: ArrayLike,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del params, key, train
        x = jnp.asarray(x)
        return x.reshape(x.shape[0], *resolve(x.shape)), state

    return Layer(init, apply, name)
