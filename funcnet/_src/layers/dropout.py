"""Dropout: randomly zero inputs while training.

``rate`` is the probability of dropping a value (as in Keras, Flax and
PyTorch); kept values are scaled by ``1 / (1 - rate)``, so inference is the
identity. The decisions are in ``docs/layers-norm-dropout-embed.md``.
"""

from __future__ import annotations

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
    shape_error,
)


def Dropout(rate: float, *, name: str = "Dropout") -> Layer:
    """Inverted dropout: zeroes each value with probability ``rate`` when training.

    With ``train=True`` each value is kept with probability ``1 - rate`` and
    scaled by ``1 / (1 - rate)``, so the mean is preserved; with
    ``train=False`` (the default) the input passes through unchanged.

    Args:
        rate: the probability of dropping each value, in [0, 1).
        name: the name used in error paths and summaries.

    Returns:
        A parameterless layer mapping ``[batch, ...]`` to the same shape.
        ``apply`` needs ``key=`` when ``train=True``: a ``jax.random.key`` or
        an integer seed (``key=42`` is ``key=jax.random.key(42)``).

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.Dropout(0.5)
        >>> _, params, state = net.init(jax.random.key(0), (None, 4))
        >>> x = jnp.ones((1, 4))
        >>> net.apply(params, state, x)[0]  # inference: the identity
        Array([[1., 1., 1., 1.]], dtype=float32)
        >>> y, _ = net.apply(params, state, x, train=True, key=jax.random.key(1))
        >>> sorted(set(y.ravel().tolist()) - {0.0, 2.0})  # dropped or doubled
        []
        >>> bool((net.apply(params, state, x, train=True, key=1)[0] == y).all())  # a seed
        True
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(
            f"{name}: rate is the probability of dropping a value and must be in [0, 1), "
            f"got {rate!r}. For a keep probability p, pass rate=1 - p."
        )

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        del key
        return check_input_shape(name, input_shape, min_rank=0), {}, {}

    def apply(
        params: Params,
        state: State,
        x: ArrayLike,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del params
        x = check_float(name, x)
        if not train or rate == 0:
            return x, state
        if key is None:
            raise shape_error(
                name,
                "Dropout needs a key when train=True: call net.apply(params, state, x, "
                "train=True, key=jax.random.key(0)) (fit and the train step pass one for you).",
            )
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype)), state

    return Layer(init, apply, name)
