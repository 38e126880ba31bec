"""Masking: marks the padded steps of a sequence, as Keras's ``Masking`` layer.

A step whose features all equal ``mask_value`` is padding. The layer returns
``(x, mask)``, the input recurrent layers built with ``masked=True`` take; the
mask travels as data, explicitly (docs/design.md, "Sequence masks").
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from funcnet._src.core import (
    InputShape,
    Layer,
    Params,
    State,
    check_float,
    check_input_shape,
)


def Masking(mask_value: float = 0.0, *, name: str = "Masking") -> Layer:
    """Marks the steps whose features all equal ``mask_value`` as padding.

    Like Keras's ``Masking``, padded steps are also set to zero in ``x``.

    Args:
        mask_value: the value every feature of a padded step holds.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping ``x`` ``[batch, time, ...features]`` to ``(x, mask)``
        with ``mask`` ``[batch, time]``, True for real steps; no params.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.serial(fn.Masking(), fn.LSTM(3, masked=True))
        >>> x = jnp.array([[[1.0], [2.0], [0.0]]])  # one sequence of length 2, padded to 3
        >>> net.init(jax.random.key(0), (None, 3, 1))[0]
        (None, 3)
        >>> (x_out, mask), _ = fn.Masking().apply({}, {}, x)
        >>> mask.tolist()
        [[True, True, False]]
    """
    value = float(mask_value)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        del key
        shape = check_input_shape(name, input_shape, min_rank=3)
        return (tuple(shape), tuple(shape[:2])), {}, {}

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        del params, key, train
        x = check_float(name, x)
        check_input_shape(name, x.shape, min_rank=3)
        real = jnp.any(x != value, axis=tuple(range(2, x.ndim)))
        keep = real.reshape(real.shape + (1,) * (x.ndim - 2))
        return (jnp.where(keep, x, jnp.zeros_like(x)), real), state

    return Layer(init, apply, name)
