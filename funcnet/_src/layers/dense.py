"""Dense: the fully connected layer, ``y = activation(x @ w + b)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet._src.core import (
    InputShape,
    Layer,
    Params,
    Shape,
    State,
    check_float,
    check_input_shape,
    expand_to,
    shape_error,
)
from funcnet._src.layers._checks import GLOROT_UNIFORM, Initializer, positive_int
from funcnet._src.layers.activations import get_activation


def Dense(
    units: int,
    activation: str | Callable[[jax.Array], jax.Array] | None = None,
    *,
    use_bias: bool = True,
    w_init: Initializer = GLOROT_UNIFORM,
    b_init: Initializer = jax.nn.initializers.zeros,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    name: str = "Dense",
) -> Layer:
    """A fully connected layer over the last axis: ``activation(x @ w + b)``.

    The defaults are Keras's: Glorot-uniform weights, zero biases.

    Args:
        units: the size of the output's last axis.
        activation: a name from ``funcnet.ACTIVATIONS`` ("relu", "sigmoid", ...),
            a function, or None for linear.
        use_bias: whether to add the bias ``b``.
        w_init: initializer of ``w``, shape ``[in_features, units]``
            (``jax.nn.initializers``).
        b_init: initializer of ``b``, shape ``[units]``.
        dtype: the computation dtype; None computes in the input's dtype.
        param_dtype: the dtype in which ``w`` and ``b`` are stored.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping ``[..., in_features]`` to ``[..., units]``, with params
        ``{"w": [in_features, units], "b": [units]}``.

    Example:
        >>> import jax, funcnet as fn
        >>> net = fn.Dense(3, activation="relu")
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 2))
        >>> jax.tree.map(jax.numpy.shape, params)
        {'b': (3,), 'w': (2, 3)}
    """
    units = positive_int(name, "units", units)
    act = get_activation(activation, name)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        shape = check_input_shape(name, input_shape)
        in_features = shape[-1]
        if in_features is None:
            raise shape_error(
                name, f"the last (feature) dimension must be known at init, got shape {shape}."
            )
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init(w_key, (in_features, units), param_dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (units,), param_dtype)
        return (*shape[:-1], units), params, {}

    def apply(
        params: Params,
        state: State,
        x: ArrayLike,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del key, train
        x = check_float(name, x)
        w = params["w"]
        if x.ndim < 1 or x.shape[-1] != w.shape[0]:
            raise shape_error(
                name,
                f"expected input with last dimension {w.shape[0]} (the size given at init), "
                f"got input of shape {x.shape}. Check the previous layer's output, or "
                "re-run init with this input shape.",
            )
        compute_dtype = dtype or x.dtype
        y = jnp.matmul(x.astype(compute_dtype), w.astype(compute_dtype))
        if use_bias:
            y = y + expand_to(params["b"].astype(compute_dtype), y.ndim)
        return act(y), state

    return Layer(init, apply, name)
