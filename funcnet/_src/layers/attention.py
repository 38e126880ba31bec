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
from typing import Any

import jax
import jax.numpy as jnp

from funcnet._src.core import (
    InputShape,
    Layer,
    Params,
    Shape,
    State,
    check_float,
    dtype_of,
    expand_to,
    is_shape,
    shape_error,
    shape_of,
    type_error,
)
from funcnet._src.layers._checks import check_flags, optional_positive_int, positive_int

_FORMS = (
    "x [batch, T, D] for self-attention, (query, key_value), (query, key, value) "
    "or (query, key, value, mask)"
)


def _split(name: str, inputs: Any, is_one: Any) -> tuple[Any, Any, Any, Any]:
    """``(query, key, value, mask)`` from any accepted input form (shapes or arrays)."""
    if is_one(inputs):
        return inputs, inputs, inputs, None
    if isinstance(inputs, (tuple, list)) and len(inputs) in (2, 3, 4):
        if len(inputs) == 2:
            return inputs[0], inputs[1], inputs[1], None
        if len(inputs) == 3:
            return (*inputs, None)
        return tuple(inputs)  # type: ignore[return-value]
    got = (
        f"a {type(inputs).__name__} of {len(inputs)}"
        if isinstance(inputs, (tuple, list))
        else repr(inputs)
    )
    raise shape_error(name, f"expected {_FORMS}; got {got}.")


def _check_rank3(name: str, role: str, shape: tuple) -> None:
    if len(shape) != 3:
        raise shape_error(
            name,
            f"expected the {role} as [batch, length, features] (rank 3), got shape {shape}. "
            "For a single token use x[:, None, :]; for a sequence per example, reshape to "
            "(batch, length, features).",
        )


def _check_mask_shape(name: str, mask: tuple, want: tuple) -> None:
    """``mask`` must broadcast to ``want`` = (batch, heads, Tq, Tk) dimension by dimension."""
    labels = ("batch", "heads", "query length", "key length")
    ok = len(mask) == 4 and all(m is None or w is None or m in (1, w) for m, w in zip(mask, want))
    if not ok:
        expected = ", ".join(
            f"{lab} {w if w is not None else '?'} or 1" for lab, w in zip(labels, want)
        )
        raise shape_error(
            name,
            f"expected a mask of shape [{expected}], got {mask}. A padding mask over keys "
            "of shape [batch, Tk] becomes mask[:, None, None, :].",
        )


def _check_decode_shape(name: str, specs: tuple) -> None:
    """decode=True: one self-attention input whose batch and length (the cache's) are known."""
    if specs[1] is not specs[0] or specs[3] is not None:
        raise shape_error(
            name,
            "decode=True is causal self-attention over a cache: init takes one shape "
            "(batch, max_length, features), not a tuple of query, key, value or mask shapes.",
        )
    shape = shape_of(specs[0])
    if shape[0] is None or shape[1] is None:
        raise shape_error(
            name,
            f"decode=True sizes its key/value cache at init, so the batch size and the maximum "
            f"length must be known, got input shape {shape}. Init the decoding model with e.g. "
            "(batch, max_length, features), or (batch, max_length) token ids for a language model.",
        )


def _check_lengths_and_batch(name: str, q: tuple, k: tuple, v: tuple) -> None:
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
        dtype: the computation dtype; None computes in the query's dtype.
        param_dtype: the dtype in which the weights are stored.
        name: the name used in error paths and summaries.

    Returns:
        A layer taking ``x`` ``[batch, T, D]`` (self-attention),
        ``(query, key_value)``, ``(query, key, value)`` or ``(query, key, value,
        mask)`` with query ``[batch, Tq, Dq]``, key ``[batch, Tk, Dk]``, value
        ``[batch, Tk, Dv]`` and a boolean mask broadcastable to ``[batch,
        num_heads, Tq, Tk]``; its output is ``[batch, Tq, out_features]``.

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
    """
    num_heads = positive_int(name, "num_heads", num_heads)
    key_size = positive_int(name, "key_size", key_size)
    value_size = optional_positive_int(name, "value_size", value_size)
    out_features = optional_positive_int(name, "out_features", out_features)
    check_flags(name, causal=causal, use_bias=use_bias, rotary=rotary, decode=decode)
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
    v_size = value_size or key_size

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        specs = _split(name, input_shape, is_shape)
        for role, spec in zip(("query", "key", "value", "mask"), specs):
            if spec is not None and not is_shape(spec):
                raise shape_error(
                    name, f"the {role} must be one shape such as (None, 4, 3), got {spec!r}."
                )
        q, k, v = (shape_of(s) for s in specs[:3])
        for role, shape in (("query", q), ("key", k), ("value", v)):
            _check_rank3(name, role, shape)
            if shape[-1] is None:
                raise shape_error(
                    name, f"the {role}'s feature dimension must be known at init, got {shape}."
                )
        _check_lengths_and_batch(name, q, k, v)
        if specs[3] is not None:
            mask_dtype = dtype_of(specs[3], jnp.bool_)
            if mask_dtype != jnp.bool_:
                raise type_error(name, f"expected a boolean mask, got dtype {mask_dtype}.")
            _check_mask_shape(name, shape_of(specs[3]), (q[0], num_heads, q[1], k[1]))
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
            cache_dtype = dtype or dtype_of(specs[0], jnp.float32)
            batch, length = q[0], q[1]
            state = {
                "key": jnp.zeros((batch, length, num_heads, key_size), cache_dtype),
                "value": jnp.zeros((batch, length, num_heads, v_size), cache_dtype),
                "index": jnp.zeros((), jnp.int32),
            }
        return (q[0], q[1], out), params, state

    def project(p: Params, x: jax.Array, role: str, compute_dtype: Any) -> jax.Array:
        w = p["w"]
        if x.shape[-1] != w.shape[0]:
            raise shape_error(
                name,
                f"expected the {role} with {w.shape[0]} features (the size given at init), got "
                f"shape {x.shape}. Check the previous layer's output, or re-run init with this "
                "input shape.",
            )
        y = jnp.einsum("btd,dhk->bthk", x.astype(compute_dtype), w.astype(compute_dtype))
        if use_bias:
            y = y + expand_to(p["b"].astype(compute_dtype), 4)
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
            logits = jnp.where(allowed, logits, jnp.finfo(logit_dtype).min)
        weights = jax.nn.softmax(logits, axis=-1).astype(compute_dtype)
        heads = jnp.einsum("bhqs,bshv->bqhv", weights, v)
        wo = params["output"]["w"].astype(compute_dtype)
        y = jnp.einsum("bqhv,hvo->bqo", heads, wo)
        if use_bias:
            y = y + expand_to(params["output"]["b"].astype(compute_dtype), 3)
        return y

    def apply_decode(params: Params, state: State, x: Any) -> tuple[jax.Array, State]:
        if isinstance(x, (tuple, list)):
            raise shape_error(
                name,
                f"decode=True is self-attention over the cache: expected x [batch, T, features], "
                f"got a {type(x).__name__} of {len(x)}. Pass the new tokens' features alone.",
            )
        x = check_float(name, x)
        _check_rank3(name, "query", x.shape)
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

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del key, train
        if decode:
            return apply_decode(params, state, x)
        query, key_in, value, mask = _split(name, x, lambda a: not isinstance(a, (tuple, list)))
        query, key_in, value = (check_float(name, a) for a in (query, key_in, value))
        for role, a in (("query", query), ("key", key_in), ("value", value)):
            _check_rank3(name, role, a.shape)
        _check_lengths_and_batch(name, query.shape, key_in.shape, value.shape)
        compute_dtype = dtype or query.dtype
        batch, tq, tk = query.shape[0], query.shape[1], key_in.shape[1]
        q = project(params["query"], query, "query", compute_dtype)
        k = project(params["key"], key_in, "key", compute_dtype)
        v = project(params["value"], value, "value", compute_dtype)
        if rotary:
            q = apply_rotary(q, jnp.arange(tq, dtype=jnp.int32), rotary_base)
            k = apply_rotary(k, jnp.arange(tk, dtype=jnp.int32), rotary_base)

        allowed = None
        if mask is not None:
            mask = jnp.asarray(mask)
            if mask.dtype != jnp.bool_:
                raise type_error(
                    name,
                    f"expected a boolean mask (True = may attend), got dtype {mask.dtype}. "
                    "Convert a 0/1 mask with mask.astype(bool).",
                )
            _check_mask_shape(name, mask.shape, (batch, q.shape[2], tq, tk))
            allowed = jnp.broadcast_to(mask, (batch, q.shape[2], tq, tk))
        if causal:
            tri = jnp.tril(jnp.ones((tq, tk), jnp.bool_)).reshape(1, 1, tq, tk)
            tri = jnp.broadcast_to(tri, (batch, q.shape[2], tq, tk))
            allowed = tri if allowed is None else allowed & tri
        return attend(params, q, k, v, allowed, compute_dtype), state

    return Layer(init, apply, name)
