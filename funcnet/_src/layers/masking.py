"""Sequence masks: ``Masking`` marks the padded steps, ``pass_mask`` carries a mask past a layer.

A step whose features all equal ``mask_value`` is padding. ``Masking`` returns
``(x, mask)``, the input recurrent layers built with ``masked=True`` take; the
mask travels as data, explicitly (docs/design.md, "Sequence masks").
``pass_mask(layer)`` applies a layer that works step by step (Dense,
Dropout, an activation, LayerNorm) to ``x`` and hands the mask on unchanged,
as Keras's layers with ``supports_masking`` do.
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
    apply_child,
    as_layer,
    check_float,
    check_input_shape,
    init_child,
    is_shape,
    shape_error,
    shape_of,
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


def _is_pair(value: Any, is_one: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(map(is_one, value))


def pass_mask(layer: Any, *, name: str = "pass_mask") -> Layer:
    """``layer`` applied to ``x`` of a masked sequence ``(x, mask)``, the mask passed on.

    Keras carries a sequence mask through every layer with
    ``supports_masking`` that does not read it (Dense, Dropout, activations,
    LayerNormalization...) to the next layer that does. funcnet's mask is
    data, so a layer between the mask's source (:func:`Masking`,
    ``Embedding(mask_zero=True)``) and a ``masked=True`` recurrent layer is
    wrapped: ``pass_mask(Dense(8))`` maps ``(x, mask)`` to
    ``(Dense(8)(x), mask)``. The layer sees padded steps too (as in Keras);
    the recurrent layer after it skips them.

    Args:
        layer: the layer (or function) to apply to ``x``; its output must
            keep ``x``'s batch and time axes, which the mask describes.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping ``(x, mask)``, ``x`` ``[batch, time, ...]`` and
        ``mask`` ``[batch, time]``, to ``(y, mask)`` with ``y`` ``layer``'s
        output ``[batch, time, ...]``; params and state are ``layer``'s own.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.serial(fn.Embedding(10, 4, mask_zero=True),
        ...                 fn.pass_mask(fn.Dense(3, "tanh")),
        ...                 fn.SimpleRNN(2, masked=True))
        >>> _, params, state = net.init(jax.random.key(0), (None, 3))
        >>> y, _ = net.apply(params, state, jnp.array([[5, 7, 0], [5, 7, 9]]))
        >>> y.shape  # the first sequence stops at its padding (id 0)
        (2, 2)
        >>> short, _ = net.apply(params, state, jnp.array([[5, 7]]))
        >>> bool(jnp.allclose(y[0], short[0]))
        True
    """
    child = as_layer(layer)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        if not _is_pair(input_shape, is_shape):
            raise shape_error(
                name,
                f"expected the shapes of (x, mask), x [batch, time, ...] and mask [batch, time], "
                f"got {input_shape!r}. Put pass_mask after a layer that makes the pair "
                "(Masking, Embedding(mask_zero=True)), or use the layer without pass_mask.",
            )
        x_shape, mask_shape = (shape_of(s) for s in input_shape)
        out_shape, params, state = init_child(name, child, key, input_shape[0])
        if not is_shape(out_shape) or not _same_steps(shape_of(out_shape), mask_shape):
            raise shape_error(
                name,
                f"the mask {mask_shape} describes [batch, time] of x {x_shape}, but "
                f"{child.name} returns {out_shape!r}, which does not keep those axes. Only a "
                "layer that works step by step passes a mask on: apply this one after the "
                "recurrent layer, or drop the mask first.",
            )
        return (out_shape, mask_shape), params, state

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        if not _is_pair(x, lambda a: hasattr(a, "shape")):
            raise shape_error(
                name,
                f"expected the pair (x, mask), got {_what(x)}. Put pass_mask after a "
                "layer that makes the pair (Masking, Embedding(mask_zero=True)).",
            )
        y, state = apply_child(name, child, params, state, x[0], key=key, train=train)
        return (y, x[1]), state

    return Layer(init, apply, name)


def _what(x: Any) -> str:
    if hasattr(x, "shape"):
        return f"one array of shape {tuple(x.shape)}"
    return type(x).__name__


def _same_steps(out_shape: tuple, mask_shape: tuple) -> bool:
    """Whether ``out_shape`` starts with the ``[batch, time]`` the mask describes."""
    if len(out_shape) < len(mask_shape):
        return False
    return all(a is None or b is None or a == b for a, b in zip(out_shape, mask_shape))
