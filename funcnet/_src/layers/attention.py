"""Multi-head dot-product attention: ``softmax(q k^T / sqrt(key_size)) v``, per head.

:func:`MultiHeadAttention` takes ``x`` ``[batch, T, D]`` (self-attention),
``(query, key_value)``, ``(query, key, value)`` or ``(query, key, value,
mask)``, with a boolean mask of rank 4; ``causal=True`` hides later keys.
``rotary=True`` rotates queries and keys by their positions (RoPE), and
``decode=True`` keeps a key/value cache in ``state`` for autoregressive
decoding, one chunk of new tokens per call.
The input forms, the mask, the params layout, the initialisation and the
precision, and why, are in ``docs/layers-attention-recurrent.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet._src.core import (
    InputShape,
    Layer,
    Params,
    State,
    check_float,
    dtype_of,
    expand_to,
    is_shape,
    shape_error,
    shape_of,
    type_error,
)
from funcnet._src.layers._checks import (
    check_flags,
    is_int,
    optional_positive_int,
    positive_int,
)

_FORMS = (
    "x [batch, T, D] for self-attention, (query, key_value), (query, key, value) "
    "or (query, key, value, mask)"
)
_MASKED_FORMS = (
    "with masked=True: (x, mask) for self-attention with a padding mask [batch, T], or "
    "(query, key_value), (query, key, value) or (query, key, value, attention_mask) where "
    "each of query, key and value is an array or an (array, padding_mask) pair"
)


class _Inputs(NamedTuple):
    """The parts of one call: arrays (apply) or shapes (init); absent masks are None."""

    query: Any
    key: Any
    value: Any
    attention_mask: Any  # Keras's attention_mask, with or without the heads axis
    query_mask: Any  # padding masks [batch, T] (masked=True only)
    key_mask: Any
    value_mask: Any


def _describe(inputs: Any) -> str:
    if isinstance(inputs, (tuple, list)):
        return f"a {type(inputs).__name__} of {len(inputs)}"
    return repr(inputs)


def _split(name: str, inputs: Any, is_one: Any, masked: bool = False) -> _Inputs:
    """The parts of any accepted input form (shapes or arrays)."""
    if is_one(inputs):
        return _Inputs(inputs, inputs, inputs, None, None, None, None)
    pair = isinstance(inputs, (tuple, list)) and len(inputs) == 2
    if masked and pair and is_one(inputs[0]) and is_one(inputs[1]):
        x, mask = inputs  # (x, mask): what Embedding(mask_zero=True) and Masking give
        return _Inputs(x, x, x, None, mask, mask, mask)
    if not isinstance(inputs, (tuple, list)) or len(inputs) not in (2, 3, 4):
        raise shape_error(
            name, f"expected {_MASKED_FORMS if masked else _FORMS}; got {_describe(inputs)}."
        )
    if len(inputs) == 2:
        query, key, value, attention_mask = inputs[0], inputs[1], inputs[1], None
    else:
        query, key, value = inputs[:3]
        attention_mask = inputs[3] if len(inputs) == 4 else None
    if not masked:
        return _Inputs(query, key, value, attention_mask, None, None, None)

    def unpair(role: str, item: Any) -> tuple[Any, Any]:
        if is_one(item):
            return item, None
        if isinstance(item, (tuple, list)) and len(item) == 2 and all(map(is_one, item)):
            return item[0], item[1]
        raise shape_error(
            name,
            f"with masked=True the {role} must be an array or an (array, padding mask) pair, "
            f"got {_describe(item)}. Pass (x, mask) for self-attention, or (query, key, value) "
            "with items such as (x, mask).",
        )

    (query, query_mask), (key, key_mask), (value, value_mask) = (
        unpair(role, item) for role, item in (("query", query), ("key", key), ("value", value))
    )
    return _Inputs(query, key, value, attention_mask, query_mask, key_mask, value_mask)


def _check_rank(name: str, role: str, shape: tuple, rank: int) -> None:
    """The query has rank >= 3 ([batch, length, features] or more axes); key and value its rank."""
    if len(shape) < 3 and (role == "query" or rank == 3):
        hint = (
            " A padding mask (x, mask) needs MultiHeadAttention(..., masked=True)."
            if role == "key" and len(shape) == 2
            else ""
        )
        raise shape_error(
            name,
            f"expected the {role} as [batch, length, features] (rank 3), got shape {shape}. "
            "For a single token use x[:, None, :]; for a sequence per example, reshape to "
            f"(batch, length, features).{hint}",
        )
    if len(shape) != rank:
        raise shape_error(
            name,
            f"expected the {role} of the query's rank {rank}, got shape {shape}. Query, key "
            "and value share their batch and non-attention axes, so they have one rank.",
        )


def _check_axes_argument(name: str, attention_axes: Any) -> tuple[int, ...] | None:
    """``attention_axes`` as a tuple of ints (None stays None), or the error."""
    if attention_axes is None:
        return None
    axes = (attention_axes,) if is_int(attention_axes) else attention_axes
    if not isinstance(axes, (tuple, list)) or not axes or not all(is_int(a) for a in axes):
        raise TypeError(
            f"{name}: attention_axes must be None, an int or a tuple of ints (the axes of "
            f"the query to attend over), got {attention_axes!r}."
        )
    return tuple(int(a) for a in axes)


def _resolve_axes(name: str, axes: tuple[int, ...] | None, rank: int) -> tuple[int, ...]:
    """The attended axes of a rank-``rank`` query, Keras's way (None: every axis but the
    batch and the features; a negative axis counts from the end)."""
    if axes is None:
        return tuple(range(1, rank - 1))
    resolved = tuple(a + rank if a < 0 else a for a in axes)
    if len(set(resolved)) != len(resolved) or not all(1 <= a <= rank - 2 for a in resolved):
        raise shape_error(
            name,
            f"attention_axes={axes!r} must name distinct axes among 1..{rank - 2} of the "
            f"rank-{rank} query (neither the batch axis 0 nor the feature axis {rank - 1}). "
            "For [batch, height, width, features] use (1, 2) to attend over both, or (2,) "
            "for each row alone.",
        )
    return resolved


def _check_mask_shape(name: str, mask: tuple, want: tuple, labels: tuple, heads_axis: int) -> None:
    """``mask`` must broadcast to ``want`` (the scores' shape) dimension by dimension; the
    heads axis (at ``heads_axis``) may be left out, as Keras's attention_mask leaves it."""
    full = (*mask[:heads_axis], 1, *mask[heads_axis:]) if len(mask) == len(want) - 1 else mask
    ok = len(full) == len(want) and all(
        m is None or w is None or m in (1, w) for m, w in zip(full, want)
    )
    if not ok:
        expected = ", ".join(
            f"{lab} {w if w is not None else '?'} or 1" for lab, w in zip(labels, want)
        )
        raise shape_error(
            name,
            f"expected a mask of shape [{expected}], got {mask}. A padding mask over keys "
            "of shape [batch, Tk] becomes mask[:, None, None, :]. The heads axis may be left "
            "out (Keras's attention_mask [batch, query length, key length]).",
        )


def _check_padding_mask(name: str, role: str, mask: tuple, dtype: Any, shape: tuple) -> None:
    """A padding mask of ``role``: boolean ``[batch, T]`` matching its array ``shape``."""
    if dtype != jnp.bool_:
        raise type_error(
            name,
            f"expected a boolean padding mask for the {role} (True = a real token), got dtype "
            f"{dtype}. Convert a 0/1 mask with mask.astype(bool).",
        )
    ok = len(mask) == 2 and all(m is None or d is None or m == d for m, d in zip(mask, shape[:2]))
    if not ok:
        raise shape_error(
            name,
            f"expected the {role}'s padding mask of shape [batch, T] = {tuple(shape[:2])}, "
            f"got {tuple(mask)}. Pass (x, mask) with one entry per sequence position.",
        )


def _check_decode_shape(name: str, specs: _Inputs) -> None:
    """decode=True: one self-attention input whose batch and length (the cache's) are known."""
    if specs.key is not specs.query or specs.attention_mask is not None:
        raise shape_error(
            name,
            "decode=True is causal self-attention over a cache: init takes one shape "
            "(batch, max_length, features), not a tuple of query, key, value or mask shapes.",
        )
    shape = shape_of(specs.query)
    if shape[0] is None or shape[1] is None:
        raise shape_error(
            name,
            f"decode=True sizes its key/value cache at init, so the batch size and the maximum "
            f"length must be known, got input shape {shape}. Init the decoding model with e.g. "
            "(batch, max_length, features), or (batch, max_length) token ids for a language model.",
        )


def _check_lengths_and_batch(name: str, q: tuple, k: tuple, v: tuple, axes: tuple) -> None:
    """Keys and values pair up; query and key share the batch and non-attention axes."""
    if len(q) == 3:
        if k[1] is not None and v[1] is not None and k[1] != v[1]:
            raise shape_error(
                name,
                f"the key and value lengths differ: key length {k[1]} (shape {k}), value length "
                f"{v[1]} (shape {v}). Each key needs its value: pass sequences of equal length.",
            )
        batches = {d for d in (q[0], k[0], v[0]) if d is not None}
        if len(batches) > 1:
            raise shape_error(
                name,
                f"query, key and value batch sizes differ: {q[0]}, {k[0]}, {v[0]}. "
                "Attention pairs each query example with the keys of the same example.",
            )
        return
    same = all(a is None or b is None or a == b for a, b in zip(k[:-1], v[:-1]))
    shared = [i for i in range(len(q) - 1) if i not in axes]  # the batch and other axes
    same = same and all(q[i] is None or k[i] is None or q[i] == k[i] for i in shared)
    if not same:
        raise shape_error(
            name,
            f"query {q}, key {k} and value {v} must share the batch and the axes not attended "
            f"over, and key and value the attended axes {axes} too: only the attended axes and "
            "the features may differ between query and key.",
        )


def apply_rotary(x: jax.Array, positions: jax.Array, base: float) -> jax.Array:
    """Rotary position embedding (RoPE) of ``x`` ``[batch, T, heads, size]`` at ``positions`` ``[T]``.

    The pairs ``(x[..., i], x[..., i + size/2])`` turn by the angle
    ``position * base**(-2i/size)`` (the split-half layout of GPT-NeoX and
    Llama), so the dot product of a query at ``m`` and a key at ``n`` depends
    on ``m - n`` only. Computed in at least float32, returned in ``x``'s dtype.
    """
    half = x.shape[-1] // 2
    dtype = jnp.promote_types(x.dtype, jnp.float32)  # float32 at least: angles grow with t
    inverse = jnp.asarray(base, dtype) ** (-jnp.arange(half, dtype=dtype) / half)
    angles = positions.astype(dtype)[:, None] * inverse[None, :]
    cos = jnp.cos(angles)[None, :, None, :]
    sin = jnp.sin(angles)[None, :, None, :]
    x1, x2 = x[..., :half].astype(dtype), x[..., half:].astype(dtype)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def _glorot(key: jax.Array, shape: tuple, in_axis: Any, out_axis: Any, dtype: Any) -> jax.Array:
    init = jax.nn.initializers.glorot_uniform(in_axis=in_axis, out_axis=out_axis)
    return init(key, shape, dtype)


def MultiHeadAttention(
    num_heads: int,
    key_size: int,
    value_size: int | None = None,
    out_features: int | None = None,
    *,
    causal: bool = False,
    use_bias: bool = True,
    rotary: bool = False,
    rotary_base: float = 10000.0,
    decode: bool = False,
    attention_axes: int | Sequence[int] | None = None,
    masked: bool = False,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    name: str = "MultiHeadAttention",
) -> Layer:
    """Multi-head scaled dot-product attention (self- or cross-attention).

    Each head projects queries and keys to ``key_size`` and values to
    ``value_size``, computes ``softmax(q k^T / sqrt(key_size)) v``; the heads
    are then projected together to ``out_features``.

    Args:
        num_heads: the number of heads.
        key_size: the size of each head's queries and keys.
        value_size: the size of each head's values; None means ``key_size``.
        out_features: the size of the output's last axis; None means the
            query's feature size (so the layer can sit in a residual block).
        causal: if True, query ``i`` attends only to keys ``j <= i``.
        use_bias: whether the four projections add biases.
        rotary: if True, queries and keys are rotated by their positions
            (RoPE, split-half layout) before the dot product, so attention
            sees relative positions; ``key_size`` must be even.
        rotary_base: the base of RoPE's frequencies (10000 as in the paper).
        decode: if True, a causal self-attention layer for autoregressive
            decoding: ``init`` takes ``(batch, max_length, features)`` with
            both sizes known and makes ``state`` a key/value cache of that
            length (``{"key", "value", "index"}``, zeros); each ``apply``
            takes the next ``[batch, T, features]`` tokens, attends to
            everything cached so far plus themselves, and returns the state
            with the new keys and values written at ``index``. Writing past
            ``max_length`` gives NaN. Params are the same as with
            ``decode=False``, so a trained layer decodes with its own params.
        attention_axes: the axes of the query attended over, as Keras's
            ``attention_axes``: None means every axis but the batch and the
            features, which for ``[batch, T, features]`` is the sequence
            axis 1. Inputs of higher rank are ``[batch, *axes, features]``:
            ``(1, 2)`` on ``[batch, H, W, features]`` attends over all
            ``H * W`` positions at once, ``(2,)`` within each row. Query and
            key share the axes not attended over. ``causal``, ``rotary``,
            ``decode`` and ``masked`` work over the sequence axis of
            ``[batch, T, features]`` only.
        masked: if True, the layer reads padding masks, as Keras's
            ``query_mask``/``value_mask``: it takes ``(x, mask)`` (what
            ``Embedding(mask_zero=True)`` and ``Masking`` give) for
            self-attention, or a tuple of query, key and value whose items
            are arrays or ``(array, mask)`` pairs; a mask is boolean
            ``[batch, T]``, True for real positions. Padded keys receive no
            attention; a padded query attends to all keys uniformly, as in
            Keras. The output is ``(y, query_mask)`` when the query has a
            mask, so the next masked layer (``GlobalAvgPool(masked=True)``,
            another attention) sees it too.
        dtype: the computation dtype; None computes in the query's dtype.
        param_dtype: the dtype in which the weights are stored.
        name: the name used in error paths and summaries.

    Returns:
        A layer taking ``x`` ``[batch, T, D]`` (self-attention),
        ``(query, key_value)``, ``(query, key, value)`` or ``(query, key, value,
        mask)`` with query ``[batch, Tq, Dq]``, key ``[batch, Tk, Dk]``, value
        ``[batch, Tk, Dv]`` and a boolean mask broadcastable to ``[batch,
        num_heads, Tq, Tk]`` (or to ``[batch, Tq, Tk]``, Keras's
        ``attention_mask``; True = may attend); its output is ``[batch, Tq,
        out_features]``. With ``attention_axes``, the mask has the scores'
        shape ``[batch, *other axes, num_heads, *query axes, *key axes]``,
        the heads axis again optional.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> mha = fn.MultiHeadAttention(num_heads=2, key_size=4, causal=True)
        >>> out_shape, params, state = mha.init(jax.random.key(0), (None, 5, 3))
        >>> out_shape
        (None, 5, 3)
        >>> jax.tree.map(jnp.shape, params["query"])
        {'b': (2, 4), 'w': (3, 2, 4)}
        >>> y, _ = mha.apply(params, state, jnp.ones((1, 5, 3)))
        >>> y.shape
        (1, 5, 3)

        Attention over both axes of an image, and over padded token sequences:

        >>> image = fn.MultiHeadAttention(2, 4, attention_axes=(1, 2))
        >>> image.init(jax.random.key(0), (None, 6, 6, 3))[0]
        (None, 6, 6, 3)
        >>> net = fn.serial(fn.Embedding(10, 8, mask_zero=True),
        ...                 fn.MultiHeadAttention(2, 4, masked=True))
        >>> _, params, state = net.init(jax.random.key(0), jax.ShapeDtypeStruct((2, 4), jnp.int32))
        >>> (y, mask), _ = net.apply(params, state, jnp.array([[3, 1, 0, 0], [5, 2, 7, 0]]))
        >>> y.shape, mask.tolist()
        ((2, 4, 8), [[True, True, False, False], [True, True, True, False]])
    """
    num_heads = positive_int(name, "num_heads", num_heads)
    key_size = positive_int(name, "key_size", key_size)
    value_size = optional_positive_int(name, "value_size", value_size)
    out_features = optional_positive_int(name, "out_features", out_features)
    check_flags(name, causal=causal, use_bias=use_bias, rotary=rotary, decode=decode, masked=masked)
    axes_argument = _check_axes_argument(name, attention_axes)
    if rotary and key_size % 2:
        raise ValueError(
            f"{name}: rotary=True rotates pairs of query/key features, so key_size must be "
            f"even, got {key_size}. Use an even key_size such as {key_size + 1}."
        )
    if (
        not isinstance(rotary_base, (int, float))
        or isinstance(rotary_base, bool)
        or not (rotary_base > 1)
    ):
        raise ValueError(f"{name}: rotary_base must be a number > 1, got {rotary_base!r}.")
    if decode and not causal:
        raise ValueError(
            f"{name}: decode=True caches keys for autoregressive decoding, which is causal; "
            "pass causal=True as well (a non-causal layer would need keys not generated yet)."
        )
    if decode and masked:
        raise ValueError(
            f"{name}: decode=True takes the new tokens alone, so it reads no padding mask; "
            "drop masked=True (a cache decodes one batch of equal-length prompts)."
        )
    v_size = value_size or key_size
    sequence_only = [
        option for option, on in (("causal", causal), ("rotary", rotary), ("masked", masked)) if on
    ]

    def geometry(rank: int) -> tuple[int, ...]:
        """The attended axes for a query of ``rank``, checked against the sequence-only options."""
        axes = _resolve_axes(name, axes_argument, rank)
        if sequence_only and (rank != 3 or axes != (1,)):
            options = ", ".join(f"{o}=True" for o in sequence_only)
            raise shape_error(
                name,
                f"{options} works over the sequence axis of [batch, length, features] inputs, "
                f"got attention over axes {axes} of a rank-{rank} query. Use rank-3 inputs "
                f"with attention_axes=None (or (1,)), or drop {options}.",
            )
        return axes

    def scores_shape(q: tuple, k: tuple, axes: tuple) -> tuple[tuple, tuple, int]:
        """The attention scores' shape and axis labels, Keras's layout, and the heads axis."""
        if len(q) == 3:
            labels: tuple[str, ...] = ("batch", "heads", "query length", "key length")
            return (q[0], num_heads, q[1], k[1]), labels, 1
        other = [i for i in range(1, len(q) - 1) if i not in axes]
        want = (
            q[0],
            *(q[i] for i in other),
            num_heads,
            *(q[a] for a in axes),
            *(k[a] for a in axes),
        )
        labels = (
            "batch",
            *(f"axis {i}" for i in other),
            "heads",
            *(f"query axis {a}" for a in axes),
            *(f"key axis {a}" for a in axes),
        )
        return want, labels, 1 + len(other)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        specs = _split(name, input_shape, is_shape, masked)
        for role, spec in zip(("query", "key", "value", "mask"), specs[:4]):
            if spec is not None and not is_shape(spec):
                raise shape_error(
                    name, f"the {role} must be one shape such as (None, 4, 3), got {spec!r}."
                )
        q, k, v = (shape_of(s) for s in specs[:3])
        for role, shape in (("query", q), ("key", k), ("value", v)):
            _check_rank(name, role, shape, len(q))
            if shape[-1] is None:
                raise shape_error(
                    name, f"the {role}'s feature dimension must be known at init, got {shape}."
                )
        axes = geometry(len(q))
        _check_lengths_and_batch(name, q, k, v, axes)
        if specs.attention_mask is not None:
            mask_dtype = dtype_of(specs.attention_mask, jnp.bool_)
            if mask_dtype != jnp.bool_:
                raise type_error(name, f"expected a boolean mask, got dtype {mask_dtype}.")
            _check_mask_shape(name, shape_of(specs.attention_mask), *scores_shape(q, k, axes))
        for role, spec, shape in (
            ("query", specs.query_mask, q),
            ("key", specs.key_mask, k),
            ("value", specs.value_mask, v),
        ):
            if spec is not None:
                _check_padding_mask(name, role, shape_of(spec), dtype_of(spec, jnp.bool_), shape)
        if decode:
            _check_decode_shape(name, specs)
        out = out_features or q[-1]
        keys = jax.random.split(key, 4)
        params = {
            "query": {"w": _glorot(keys[0], (q[-1], num_heads, key_size), 0, (1, 2), param_dtype)},
            "key": {"w": _glorot(keys[1], (k[-1], num_heads, key_size), 0, (1, 2), param_dtype)},
            "value": {"w": _glorot(keys[2], (v[-1], num_heads, v_size), 0, (1, 2), param_dtype)},
            "output": {"w": _glorot(keys[3], (num_heads, v_size, out), (0, 1), 2, param_dtype)},
        }
        if use_bias:
            for proj, size in (("query", key_size), ("key", key_size), ("value", v_size)):
                params[proj]["b"] = jnp.zeros((num_heads, size), param_dtype)
            params["output"]["b"] = jnp.zeros((out,), param_dtype)
        state: State = {}
        if decode:
            cache_dtype = dtype or dtype_of(specs.query, jnp.float32)
            batch, length = q[0], q[1]
            state = {
                "key": jnp.zeros((batch, length, num_heads, key_size), cache_dtype),
                "value": jnp.zeros((batch, length, num_heads, v_size), cache_dtype),
                "index": jnp.zeros((), jnp.int32),
            }
        out_shape = (*q[:-1], out)
        if specs.query_mask is not None:
            return (out_shape, shape_of(specs.query_mask)), params, state
        return out_shape, params, state

    def project(p: Params, x: jax.Array, role: str, compute_dtype: Any) -> jax.Array:
        """``x`` ``[batch, ..., features]`` to ``[batch, ..., heads, size]``."""
        w = p["w"]
        if x.shape[-1] != w.shape[0]:
            raise shape_error(
                name,
                f"expected the {role} with {w.shape[0]} features (the size given at init), got "
                f"shape {x.shape}. Check the previous layer's output, or re-run init with this "
                "input shape.",
            )
        equation = "btd,dhk->bthk" if x.ndim == 3 else "...d,dhk->...hk"
        y = jnp.einsum(equation, x.astype(compute_dtype), w.astype(compute_dtype))
        if use_bias:
            y = y + expand_to(p["b"].astype(compute_dtype), y.ndim)
        return y

    def attend(
        params: Params, q: jax.Array, k: jax.Array, v: jax.Array, allowed: Any, compute_dtype: Any
    ) -> jax.Array:
        """The heads' ``softmax(q k^T) v``, projected to the output: ``[batch, Tq, out]``."""
        q = q / jnp.asarray(math.sqrt(q.shape[-1]), compute_dtype)
        # Logits and softmax in >= float32: bfloat16 would lose the small weights.
        logit_dtype = jnp.promote_types(compute_dtype, jnp.float32)
        logits = jnp.einsum("bqhk,bshk->bhqs", q, k, preferred_element_type=logit_dtype)
        if allowed is not None:
            allowed = jnp.broadcast_to(allowed, logits.shape)
            # A row with no allowed key is all equal: uniform weights, Keras's behaviour.
            logits = jnp.where(allowed, logits, jnp.finfo(logit_dtype).min)
        weights = jax.nn.softmax(logits, axis=-1).astype(compute_dtype)
        heads = jnp.einsum("bhqs,bshv->bqhv", weights, v)
        wo = params["output"]["w"].astype(compute_dtype)
        y = jnp.einsum("bqhv,hvo->bqo", heads, wo)
        if use_bias:
            y = y + expand_to(params["output"]["b"].astype(compute_dtype), 3)
        return y

    def attend_over_axes(
        params: Params,
        q: jax.Array,
        k: jax.Array,
        v: jax.Array,
        mask: Any,
        axes: tuple[int, ...],
        compute_dtype: Any,
    ) -> jax.Array:
        """Attention over ``axes`` of projected ``[batch, ..., heads, size]`` arrays.

        The batch and the axes not attended over are folded into one batch
        axis and the attended axes into one sequence axis, so the softmax runs
        over all attended key positions at once (Keras's softmax over several
        axes), then the output is unfolded to the query's layout.
        """
        rank = q.ndim - 1  # the inputs' rank: projection replaced features by (heads, size)
        other = tuple(i for i in range(1, rank - 1) if i not in axes)
        order = (0, *other, *axes)
        lead = (q.shape[0], *(q.shape[i] for i in other))
        q_attended = tuple(q.shape[a] for a in axes)
        k_attended = tuple(k.shape[a] for a in axes)

        def fold(t: jax.Array, attended: tuple) -> jax.Array:
            t = jnp.transpose(t, (*order, rank - 1, rank))
            return t.reshape((math.prod(lead), math.prod(attended), *t.shape[-2:]))

        allowed = None
        if mask is not None:
            heads_axis = 1 + len(other)
            if mask.ndim == q.ndim - 1:  # Keras's attention_mask: no heads axis
                mask = jnp.expand_dims(mask, heads_axis)
            full = (*lead, num_heads, *q_attended, *k_attended)
            allowed = jnp.broadcast_to(mask, full).reshape(
                (math.prod(lead), num_heads, math.prod(q_attended), math.prod(k_attended))
            )
        y = attend(
            params,
            fold(q, q_attended),
            fold(k, k_attended),
            fold(v, k_attended),
            allowed,
            compute_dtype,
        )
        y = y.reshape((*lead, *q_attended, y.shape[-1]))
        return jnp.transpose(y, tuple(int(i) for i in np.argsort((*order, rank - 1))))

    def apply_decode(params: Params, state: State, x: Any) -> tuple[jax.Array, State]:
        if isinstance(x, (tuple, list)):
            raise shape_error(
                name,
                f"decode=True is self-attention over the cache: expected x [batch, T, features], "
                f"got a {type(x).__name__} of {len(x)}. Pass the new tokens' features alone.",
            )
        x = check_float(name, x)
        _check_rank(name, "query", x.shape, 3)
        cache_k, cache_v, index = state["key"], state["value"], state["index"]
        batch, length = cache_k.shape[0], cache_k.shape[1]
        if x.shape[0] != batch or x.shape[1] > length:
            raise shape_error(
                name,
                f"the key/value cache holds {batch} sequences of up to {length} positions, got "
                f"new tokens of shape {x.shape}. Init the decoding model with "
                "(batch, max_length) large enough for the prompt and the generated tokens.",
            )
        compute_dtype = dtype or x.dtype
        q = project(params["query"], x, "query", compute_dtype)
        k = project(params["key"], x, "key", compute_dtype)
        v = project(params["value"], x, "value", compute_dtype)
        positions = index + jnp.arange(x.shape[1], dtype=jnp.int32)
        if rotary:
            q, k = apply_rotary(q, positions, rotary_base), apply_rotary(k, positions, rotary_base)
        start = (
            jnp.zeros((), jnp.int32),
            index,
            jnp.zeros((), jnp.int32),
            jnp.zeros((), jnp.int32),
        )
        cache_k = jax.lax.dynamic_update_slice(cache_k, k.astype(cache_k.dtype), start)
        cache_v = jax.lax.dynamic_update_slice(cache_v, v.astype(cache_v.dtype), start)
        # Causal over absolute positions; entries not written yet lie in the future.
        key_positions = jnp.arange(length, dtype=jnp.int32)
        allowed = (key_positions[None, :] <= positions[:, None]).reshape(1, 1, x.shape[1], length)
        y = attend(
            params,
            q,
            cache_k.astype(compute_dtype),
            cache_v.astype(compute_dtype),
            allowed,
            compute_dtype,
        )
        # dynamic_update_slice clamps a write past the end; make that loud instead.
        overflow = index + x.shape[1] > length
        y = jnp.where(overflow, jnp.asarray(jnp.nan, y.dtype), y)
        new_state = {"key": cache_k, "value": cache_v, "index": index + x.shape[1]}
        return y, new_state

    def padding(role: str, mask: Any, shape: tuple) -> jax.Array:
        mask = jnp.asarray(mask)
        _check_padding_mask(name, role, mask.shape, mask.dtype, shape)
        return mask

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        del key, train
        if decode:
            return apply_decode(params, state, x)
        parts = _split(name, x, lambda a: not isinstance(a, (tuple, list)), masked)
        query, key_in, value = (check_float(name, a) for a in parts[:3])
        for role, a in (("query", query), ("key", key_in), ("value", value)):
            _check_rank(name, role, a.shape, query.ndim)
        axes = geometry(query.ndim)
        _check_lengths_and_batch(name, query.shape, key_in.shape, value.shape, axes)
        compute_dtype = dtype or query.dtype
        q = project(params["query"], query, "query", compute_dtype)
        k = project(params["key"], key_in, "key", compute_dtype)
        v = project(params["value"], value, "value", compute_dtype)

        mask = parts.attention_mask
        if mask is not None:
            mask = jnp.asarray(mask)
            if mask.dtype != jnp.bool_:
                raise type_error(
                    name,
                    f"expected a boolean mask (True = may attend), got dtype {mask.dtype}. "
                    "Convert a 0/1 mask with mask.astype(bool).",
                )
            _check_mask_shape(name, mask.shape, *scores_shape(query.shape, key_in.shape, axes))
        if query.ndim != 3 or axes != (1,):
            y = attend_over_axes(params, q, k, v, mask, axes, compute_dtype)
            return y, state

        batch, tq, tk = query.shape[0], query.shape[1], key_in.shape[1]
        if rotary:
            q = apply_rotary(q, jnp.arange(tq, dtype=jnp.int32), rotary_base)
            k = apply_rotary(k, jnp.arange(tk, dtype=jnp.int32), rotary_base)
        scores = (batch, num_heads, tq, tk)
        allowed = None
        if mask is not None:
            if mask.ndim == 3:  # Keras's attention_mask [batch, Tq, Tk]: the same for every head
                mask = mask[:, None]
            allowed = jnp.broadcast_to(mask, scores)
        # Keras's query_mask & value_mask & key_mask: padded keys get no attention.
        query_mask = None
        if masked:
            query_mask = (
                None
                if parts.query_mask is None
                else padding("query", parts.query_mask, query.shape)
            )
            pads = [query_mask[:, None, :, None]] if query_mask is not None else []
            for role, m, shape in (
                ("key", parts.key_mask, key_in.shape),
                ("value", parts.value_mask, value.shape),
            ):
                if m is not None:
                    pads.append(padding(role, m, shape)[:, None, None, :])
            for pad in pads:
                pad = jnp.broadcast_to(pad, scores)
                allowed = pad if allowed is None else allowed & pad
        if causal:
            tri = jnp.tril(jnp.ones((tq, tk), jnp.bool_)).reshape(1, 1, tq, tk)
            tri = jnp.broadcast_to(tri, scores)
            allowed = tri if allowed is None else allowed & tri
        y = attend(params, q, k, v, allowed, compute_dtype)
        return (y if query_mask is None else (y, query_mask)), state

    return Layer(init, apply, name)
