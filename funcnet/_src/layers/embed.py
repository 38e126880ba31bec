"""Embedding: a trainable lookup table from integer ids to vectors.

Ids outside ``[0, num_embeddings)`` give rows of NaN rather than a silently
clamped row; float ids are refused. The decisions (initialisation, id
checks, output dtype) are in ``docs/layers-norm-dropout-embed.md``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from funcnet._src.core import (
    InputShape,
    Layer,
    Params,
    State,
    check_input_shape,
    dtype_of,
    type_error,
)
from funcnet._src.layers._checks import Initializer, check_flags, positive_int

_NORMAL_0_05 = jax.nn.initializers.normal(stddev=0.05)


def _id_dtype_error(name: str, dtype: Any, shape: Any) -> Exception:
    return type_error(
        name,
        f"expected integer token ids, got dtype {jnp.dtype(dtype)} (shape {shape}). "
        "Embedding looks rows up by integer id; if these floats are ids, cast with "
        "x.astype(jnp.int32).",
    )


def Embedding(
    num_embeddings: int,
    features: int,
    *,
    w_init: Initializer = _NORMAL_0_05,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    mask_zero: bool = False,
    name: str = "Embedding",
) -> Layer:
    """A lookup table: each integer id in ``[0, num_embeddings)`` becomes a row.

    Args:
        num_embeddings: the number of ids (the vocabulary size).
        features: the size of each embedding vector.
        w_init: initializer of the table, shape ``[num_embeddings, features]``;
            the default draws from ``normal(stddev=0.05)`` (Keras's draws
            uniformly from [-0.05, 0.05]; docs/keras.md).
        dtype: the output dtype; None gives the table's dtype.
        param_dtype: the dtype in which the table is stored.
        mask_zero: also return the mask ``ids != 0``: the output is
            ``(rows, mask)``, what a recurrent layer built with
            ``masked=True`` takes (id 0 is padding, as Keras's ``mask_zero``).
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping integer ids ``[batch, ...]`` to ``[batch, ..., features]``,
        with params ``{"embedding": [num_embeddings, features]}``. ``init``
        takes a shape such as ``(None, T)`` (assumed integer) or a
        ``jax.ShapeDtypeStruct((None, T), jnp.int32)``. Ids out of range give
        rows of NaN.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.Embedding(10, 4)
        >>> spec = jax.ShapeDtypeStruct((None, 7), jnp.int32)
        >>> out_shape, params, state = net.init(jax.random.key(0), spec)
        >>> out_shape, jax.tree.map(jnp.shape, params)
        ((None, 7, 4), {'embedding': (10, 4)})
        >>> y, _ = net.apply(params, state, jnp.array([[3, 3, 9]]))
        >>> bool((y[0, 0] == params["embedding"][3]).all()), y.shape
        (True, (1, 3, 4))
    """
    num_embeddings = positive_int(name, "num_embeddings", num_embeddings)
    check_flags(name, mask_zero=mask_zero)
    features = positive_int(name, "features", features)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        shape = check_input_shape(name, input_shape, min_rank=1)
        spec_dtype = dtype_of(input_shape, default=jnp.int32)
        if not jnp.issubdtype(spec_dtype, jnp.integer):
            raise _id_dtype_error(name, spec_dtype, shape)
        params = {"embedding": w_init(key, (num_embeddings, features), param_dtype)}
        if mask_zero:
            return ((*shape, features), tuple(shape)), params, {}
        return (*shape, features), params, {}

    def apply(
        params: Params,
        state: State,
        x: ArrayLike,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        del key, train
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise _id_dtype_error(name, x.dtype, x.shape)
        table = params["embedding"]
        table = table.astype(dtype or table.dtype)
        valid = x >= 0
        # A bound that overflows the id dtype (int8 ids, 1000 rows) would wrap;
        # such ids cannot reach it anyway.
        if table.shape[0] <= jnp.iinfo(x.dtype).max:
            valid = valid & (x < jnp.asarray(table.shape[0], x.dtype))
        rows = jnp.take(table, jnp.where(valid, x, 0), axis=0, mode="clip")
        nan = jnp.array(jnp.nan, rows.dtype)
        out = jnp.where(valid[..., None], rows, nan)
        if mask_zero:
            return (out, x != 0), state
        return out, state

    return Layer(init, apply, name)
