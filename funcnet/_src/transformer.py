"""Transformer blocks, positional encodings and a weight-tied language model.

Everything here is built from funcnet's own layers and combinators:
:func:`TransformerEncoderBlock` and :func:`TransformerDecoderBlock` are
``LayerNorm`` + ``MultiHeadAttention`` + a ``Dense`` feed-forward (GELU or
SwiGLU) with residual connections and ``Dropout``; :func:`TransformerLM` is
``tied_embedding(serial(positions, repeat(TransformerDecoderBlock, depth),
LayerNorm))``. Positions are learned (:func:`PositionalEmbedding`), fixed
(:func:`SinusoidalPositions`) or rotary (``rotary=True``, inside attention).
With ``decode=True`` the same params decode one token at a time from a
key/value cache kept in ``state`` (:func:`funcnet.generate`). The decisions
are in ``docs/transformers.md``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from funcnet._src.combinators import branches, repeat, serial
from funcnet._src.core import (
    InputShape,
    Lambda,
    Layer,
    Params,
    Shape,
    State,
    apply_child,
    as_layer,
    check_float,
    check_input_shape,
    dtype_of,
    init_child,
    is_shape,
    shape_error,
    shape_of,
    type_error,
)
from funcnet._src.layers import (
    Dense,
    Dropout,
    Embedding,
    Initializer,
    LayerNorm,
    MultiHeadAttention,
    check_flags,
    optional_positive_int,
    positive_int,
)

FFNS = ("gelu", "swiglu")
POSITIONS = ("learned", "sinusoidal", "rotary")
_NORMAL_0_02 = jax.nn.initializers.normal(stddev=0.02)


def _check_sequence(name: str, shape: tuple, features: int | None = None) -> None:
    if len(shape) != 3 or shape[-1] is None:
        raise shape_error(
            name,
            f"expected a sequence [batch, length, features] with known features, got shape "
            f"{shape}. Token ids go through an Embedding first.",
        )
    if features is not None and shape[-1] != features:
        raise shape_error(
            name,
            f"expected {features} features (the block's features), got input shape {shape}. "
            f"Build the block with features={shape[-1]}, or project the input to {features}.",
        )


def _position_state(decode: bool) -> State:
    return {"index": jnp.zeros((), jnp.int32)} if decode else {}


def _positions(state: State, length: int, decode: bool) -> tuple[jax.Array, State]:
    """The positions of ``length`` new tokens, and the state that counts them."""
    start = state["index"] if decode else jnp.zeros((), jnp.int32)
    positions = start + jnp.arange(length, dtype=jnp.int32)
    return positions, ({"index": start + length} if decode else state)


# --------------------------------------------------------------------------
# Positional encodings


def PositionalEmbedding(
    max_length: int,
    *,
    w_init: Initializer = _NORMAL_0_02,
    decode: bool = False,
    param_dtype: Any = jnp.float32,
    name: str = "PositionalEmbedding",
) -> Layer:
    """Learned absolute positions: adds row ``t`` of a table to the token at position ``t``.

    Args:
        max_length: the number of positions the table holds.
        w_init: initializer of the table ``[max_length, features]``
            (``normal(0.02)``, as GPT-2).
        decode: if True, ``state`` counts the tokens seen so far
            (``{"index"}``), so that each call continues where the last ended.
        param_dtype: the dtype in which the table is stored.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping ``[batch, T, features]`` to the same shape, with params
        ``{"embedding": [max_length, features]}``.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.PositionalEmbedding(16)
        >>> out_shape, params, state = net.init(jax.random.key(0), (None, 10, 4))
        >>> out_shape, params["embedding"].shape
        ((None, 10, 4), (16, 4))
        >>> y, _ = net.apply(params, state, jnp.zeros((2, 10, 4)))
        >>> bool((y[1, 3] == params["embedding"][3]).all())
        True
    """
    max_length = positive_int(name, "max_length", max_length)
    check_flags(name, decode=decode)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        shape = check_input_shape(name, input_shape, min_rank=1)
        _check_sequence(name, shape)
        if shape[1] is not None and shape[1] > max_length:
            raise shape_error(
                name,
                f"the table holds {max_length} positions, got sequences of length {shape[1]} "
                f"(input shape {shape}). Build it with max_length >= {shape[1]}.",
            )
        params = {"embedding": w_init(key, (max_length, shape[-1]), param_dtype)}
        return shape, params, _position_state(decode)

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del key, train
        x = check_float(name, x)
        table = params["embedding"]
        _check_sequence(name, x.shape, table.shape[1])
        if x.shape[1] > table.shape[0]:
            raise shape_error(
                name,
                f"the table holds {table.shape[0]} positions, got sequences of length "
                f"{x.shape[1]}. Build it with max_length >= {x.shape[1]}.",
            )
        positions, state = _positions(state, x.shape[1], decode)
        # Positions past the table (decoding too far) give NaN, as Embedding's bad ids do.
        rows = jnp.take(table, positions, axis=0, mode="fill", fill_value=jnp.nan)
        return x + rows[None].astype(x.dtype), state

    return Layer(init, apply, name)


def sinusoids(positions: jax.Array, features: int, base: float = 10000.0) -> jax.Array:
    """The fixed encodings of "Attention Is All You Need": ``[T]`` positions to ``[T, features]``.

    ``PE[t, 2i] = sin(t / base**(2i/features))``, ``PE[t, 2i+1] = cos(...)``.
    """
    i = jnp.arange(features // 2, dtype=jnp.float32)
    angles = positions.astype(jnp.float32)[:, None] / base ** (2 * i / features)[None, :]
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(-1, features)


def SinusoidalPositions(
    *, base: float = 10000.0, decode: bool = False, name: str = "SinusoidalPositions"
) -> Layer:
    """Fixed sinusoidal positions (Vaswani et al. 2017) added to ``[batch, T, features]``.

    ``PE[t, 2i] = sin(t / base**(2i/features))``, ``PE[t, 2i+1] =
    cos(t / base**(2i/features))``; nothing is learned, any length works.

    Args:
        base: the wavelength scale (10000 in the paper).
        decode: if True, ``state`` counts the tokens seen so far (``{"index"}``).
        name: the name used in error paths and summaries.

    Returns:
        A parameterless layer mapping ``[batch, T, features]`` (``features``
        even) to the same shape.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.SinusoidalPositions()
        >>> _, params, state = net.init(jax.random.key(0), (None, 3, 4))
        >>> y, _ = net.apply(params, state, jnp.zeros((1, 3, 4)))
        >>> [round(v, 3) for v in y[0, 1].tolist()]  # sin 1, cos 1, sin 0.01, cos 0.01
        [0.841, 0.54, 0.01, 1.0]
    """
    check_flags(name, decode=decode)
    if not isinstance(base, (int, float)) or isinstance(base, bool) or not base > 1:
        raise ValueError(f"{name}: base must be a number > 1, got {base!r}.")

    def check_even(shape: tuple) -> None:
        if shape[-1] % 2:
            raise shape_error(
                name,
                f"sinusoids come in sine/cosine pairs, so the features must be even, got input "
                f"shape {shape}. Use an even model width.",
            )

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        del key
        shape = check_input_shape(name, input_shape, min_rank=1)
        _check_sequence(name, shape)
        check_even(shape)
        return shape, {}, _position_state(decode)

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        del params, key, train
        x = check_float(name, x)
        _check_sequence(name, x.shape)
        check_even(x.shape)
        positions, state = _positions(state, x.shape[1], decode)
        return x + sinusoids(positions, x.shape[-1], base)[None].astype(x.dtype), state

    return Layer(init, apply, name)


# --------------------------------------------------------------------------
# Blocks


def _multiply(xs: tuple[jax.Array, jax.Array]) -> jax.Array:
    return xs[0] * xs[1]


def _feed_forward(kind: str, features: int, hidden: int, use_bias: bool, dtype: Any) -> Layer:
    if kind == "gelu":
        return serial(
            Dense(hidden, "gelu", use_bias=use_bias, dtype=dtype),
            Dense(features, use_bias=use_bias, dtype=dtype),
            name="ffn",
        )
    # SwiGLU (Shazeer 2020): W2 (silu(x W1) * x W3), without biases as in PaLM and Llama.
    return serial(
        branches(
            Dense(hidden, "silu", use_bias=False, dtype=dtype),
            Dense(hidden, use_bias=False, dtype=dtype),
        ),
        Lambda(_multiply, name="multiply"),
        Dense(features, use_bias=False, dtype=dtype),
        name="ffn",
    )


def _block(
    name: str,
    features: Any,
    num_heads: Any,
    *,
    causal: bool,
    ffn_features: Any,
    ffn: Any,
    dropout: Any,
    norm_first: Any,
    rotary: Any,
    epsilon: Any,
    use_bias: Any,
    decode: bool,
    dtype: Any,
) -> Layer:
    features = positive_int(name, "features", features)
    num_heads = positive_int(name, "num_heads", num_heads)
    hidden = optional_positive_int(name, "ffn_features", ffn_features) or 4 * features
    check_flags(name, norm_first=norm_first, rotary=rotary, use_bias=use_bias, decode=decode)
    if features % num_heads:
        raise ValueError(
            f"{name}: num_heads ({num_heads}) must divide features ({features}): each head "
            f"attends over features / num_heads dimensions. Choose e.g. num_heads="
            f"{math.gcd(features, num_heads)} or features={features + num_heads - features % num_heads}."
        )
    if ffn not in FFNS:
        raise ValueError(f"{name}: ffn must be 'gelu' or 'swiglu', got {ffn!r}.")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ValueError(
            f"{name}: dropout is the probability of dropping a value and must be in [0, 1), "
            f"got {dropout!r}."
        )
    children = {
        "attention_norm": LayerNorm(epsilon=epsilon, dtype=dtype),
        "attention": MultiHeadAttention(
            num_heads,
            features // num_heads,
            causal=causal,
            use_bias=use_bias,
            rotary=rotary,
            decode=decode,
            dtype=dtype,
        ),
        "ffn_norm": LayerNorm(epsilon=epsilon, dtype=dtype),
        "ffn": _feed_forward(ffn, features, hidden, use_bias, dtype),
    }
    drop = Dropout(dropout) if dropout > 0 else None
    forms = "x [batch, T, features] or (x, mask) with a boolean padding mask [batch, T]"

    def split(x: Any, is_one: Any) -> tuple[Any, Any]:
        """``(x, mask)`` from either input form (shapes or arrays); mask None if absent."""
        if is_one(x):
            return x, None
        if isinstance(x, (tuple, list)) and len(x) == 2 and not decode:
            return x[0], x[1]
        expected = "x [batch, T, features] (decode=True takes no mask)" if decode else forms
        got = f"a {type(x).__name__} of {len(x)}" if isinstance(x, (tuple, list)) else repr(x)
        raise shape_error(name, f"expected {expected}, got {got}.")

    def check_mask(mask_shape: tuple, x_shape: tuple, mask_dtype: Any) -> None:
        if mask_dtype != jnp.bool_:
            raise type_error(
                name,
                f"expected a boolean padding mask (True = a real token), got dtype {mask_dtype}. "
                "Convert a 0/1 mask with mask.astype(bool).",
            )
        ok = len(mask_shape) == 2 and all(
            m is None or d is None or m == d for m, d in zip(mask_shape, x_shape[:2])
        )
        if not ok:
            raise shape_error(
                name,
                f"expected a padding mask of shape [batch, T] = {x_shape[:2]}, got {mask_shape}. "
                "True marks real tokens, False padding.",
            )

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Any, Params, State]:
        x_spec, mask_spec = split(input_shape, is_shape)
        shape = check_input_shape(name, x_spec, min_rank=1)
        _check_sequence(name, shape, features)
        if mask_spec is not None:
            check_mask(shape_of(mask_spec), shape, dtype_of(mask_spec, jnp.bool_))
        params, state = {}, {}
        for k, (role, child) in zip(jax.random.split(key, len(children)), children.items()):
            _, params[role], state[role] = init_child(f"{name}[{role}]", child, k, x_spec)
        out = shape if mask_spec is None else (shape, shape_of(mask_spec))
        return out, params, state

    def sublayer(
        role: str, params: Params, state: State, x: jax.Array, mask: Any, key: Any, train: bool
    ) -> tuple[jax.Array, Any]:
        """``x + dropout(f(norm(x)))`` (pre-norm) or ``norm(x + dropout(f(x)))`` (post-norm)."""
        norm, norm_role = children[f"{role}_norm"], f"{role}_norm"
        keys = jax.random.split(key, 2) if key is not None else (None, None)

        def norm_of(h: jax.Array) -> jax.Array:
            y, _ = apply_child(f"{name}[{norm_role}]", norm, params[norm_role], {}, h, key=None,
                               train=train)  # fmt: skip
            return y

        h = norm_of(x) if norm_first else x
        inputs: Any = h
        if role == "attention" and mask is not None:
            inputs = (h, h, h, mask[:, None, None, :])  # a padding mask hides keys
        h, new_state = apply_child(
            f"{name}[{role}]", children[role], params[role], state[role], inputs, key=keys[0],
            train=train,
        )  # fmt: skip
        if drop is not None:
            h, _ = apply_child(f"{name}[dropout]", drop, {}, {}, h, key=keys[1], train=train)
        y = x + h
        return (y if norm_first else norm_of(y)), new_state

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, State]:
        h, mask = split(x, lambda a: not isinstance(a, (tuple, list)))
        h = check_float(name, h)
        _check_sequence(name, h.shape, features)
        if mask is not None:
            mask = jnp.asarray(mask)
            check_mask(mask.shape, h.shape, mask.dtype)
        keys = jax.random.split(key, 2) if key is not None else (None, None)
        h, attention_state = sublayer("attention", params, state, h, mask, keys[0], train)
        h, ffn_state = sublayer("ffn", params, state, h, None, keys[1], train)
        new_state = dict(state, attention=attention_state, ffn=ffn_state)
        return (h if mask is None else (h, mask)), new_state

    return Layer(init, apply, name)


def TransformerEncoderBlock(
    features: int,
    num_heads: int,
    *,
    ffn_features: int | None = None,
    ffn: str = "gelu",
    dropout: float = 0.0,
    norm_first: bool = True,
    rotary: bool = False,
    epsilon: float = 1e-5,
    use_bias: bool = True,
    dtype: Any = None,
    name: str = "TransformerEncoderBlock",
) -> Layer:
    """A Transformer encoder block: bidirectional self-attention, then a feed-forward.

    Both sublayers sit in residual connections with a LayerNorm (pre-norm by
    default) and dropout. A padding mask travels with the data: ``(x, mask)``
    in, ``(y, mask)`` out, so blocks chain (and ``repeat``) with it; padding
    keys are hidden from every query.

    Args:
        features: the model width ``D``, the last axis of the input and output.
        num_heads: the number of attention heads; must divide ``features``
            (each head attends over ``features / num_heads`` dimensions).
        ffn_features: the feed-forward's hidden width; None means ``4 * features``.
        ffn: ``"gelu"`` (``Dense(ffn_features, gelu)``, ``Dense(features)``)
            or ``"swiglu"`` (``W2 (silu(x W1) * x W3)``, no biases).
        dropout: the probability of dropping each sublayer's output before
            it is added to the residual stream (0 turns it off).
        norm_first: True (the default) normalizes each sublayer's input,
            ``x + f(norm(x))`` (pre-norm, GPT-2 and later); False normalizes
            after the residual sum, ``norm(x + f(x))`` (the original
            Transformer's post-norm). PyTorch's name and meaning.
        rotary: if True, attention rotates queries and keys by their
            positions (RoPE); then no positional layer is needed.
        epsilon: the LayerNorms' epsilon (1e-5, PyTorch's).
        use_bias: whether the attention projections and the GELU
            feed-forward add biases.
        dtype: the computation dtype; None computes in the input's dtype.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping ``x`` ``[batch, T, features]`` to the same shape, or
        ``(x, mask)`` with a boolean ``mask`` ``[batch, T]`` (True = a real
        token, False = padding) to ``(y, mask)``. Params:
        ``{"attention_norm", "attention", "ffn_norm", "ffn"}``.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> block = fn.TransformerEncoderBlock(8, num_heads=2)
        >>> out_shape, params, state = block.init(jax.random.key(0), (None, 5, 8))
        >>> out_shape, sorted(params)
        ((None, 5, 8), ['attention', 'attention_norm', 'ffn', 'ffn_norm'])
        >>> mask = jnp.array([[True, True, True, False, False]])
        >>> (y, _), _ = block.apply(params, state, (jnp.ones((1, 5, 8)), mask))
        >>> y.shape
        (1, 5, 8)
    """
    return _block(
        name, features, num_heads, causal=False, ffn_features=ffn_features, ffn=ffn,
        dropout=dropout, norm_first=norm_first, rotary=rotary, epsilon=epsilon,
        use_bias=use_bias, decode=False, dtype=dtype,
    )  # fmt: skip


def TransformerDecoderBlock(
    features: int,
    num_heads: int,
    *,
    ffn_features: int | None = None,
    ffn: str = "gelu",
    dropout: float = 0.0,
    norm_first: bool = True,
    rotary: bool = False,
    epsilon: float = 1e-5,
    use_bias: bool = True,
    decode: bool = False,
    dtype: Any = None,
    name: str = "TransformerDecoderBlock",
) -> Layer:
    """A decoder-only (GPT-style) block: causal self-attention, then a feed-forward.

    Position ``t`` sees positions ``<= t`` only. There is no cross-attention:
    this is the block of decoder-only language models; an encoder-decoder
    model adds a ``MultiHeadAttention`` over the encoder's output
    (``docs/transformers.md``). A padding mask composes with the causal mask.

    Args:
        features: the model width ``D``, the last axis of the input and output.
        num_heads: the number of attention heads; must divide ``features``
            (each head attends over ``features / num_heads`` dimensions).
        ffn_features: the feed-forward's hidden width; None means ``4 * features``.
        ffn: ``"gelu"`` (``Dense(ffn_features, gelu)``, ``Dense(features)``)
            or ``"swiglu"`` (``W2 (silu(x W1) * x W3)``, no biases).
        dropout: the probability of dropping each sublayer's output before
            it is added to the residual stream (0 turns it off).
        norm_first: True (the default) normalizes each sublayer's input,
            ``x + f(norm(x))`` (pre-norm, GPT-2 and later); False normalizes
            after the residual sum, ``norm(x + f(x))`` (the original
            Transformer's post-norm). PyTorch's name and meaning.
        rotary: if True, attention rotates queries and keys by their
            positions (RoPE); then no positional layer is needed.
        epsilon: the LayerNorms' epsilon (1e-5, PyTorch's).
        use_bias: whether the attention projections and the GELU
            feed-forward add biases.
        decode: if True, attention keeps a key/value cache in ``state``
            for autoregressive decoding (``init`` on ``(batch, max_length,
            features)``; each ``apply`` takes the next tokens). The params are
            those of ``decode=False``. Masks are not taken in this mode.
        dtype: the computation dtype; None computes in the input's dtype.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping ``x`` ``[batch, T, features]`` to the same shape, or
        ``(x, mask)`` with a boolean padding ``mask`` ``[batch, T]`` to
        ``(y, mask)``.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> block = fn.TransformerDecoderBlock(8, num_heads=2, ffn="swiglu", rotary=True)
        >>> out_shape, params, state = block.init(jax.random.key(0), (None, 5, 8))
        >>> x = jax.random.normal(jax.random.key(1), (1, 5, 8))
        >>> pair = jnp.concatenate([x, x.at[:, 4].set(0.0)])  # the 2nd changes the last token
        >>> y, _ = block.apply(params, state, pair)
        >>> bool(jnp.allclose(y[0, :4], y[1, :4]))  # the earlier positions do not see it
        True
    """
    return _block(
        name, features, num_heads, causal=True, ffn_features=ffn_features, ffn=ffn,
        dropout=dropout, norm_first=norm_first, rotary=rotary, epsilon=epsilon,
        use_bias=use_bias, decode=decode, dtype=dtype,
    )  # fmt: skip


# --------------------------------------------------------------------------
# Weight tying and the language model


def tied_embedding(
    body: Any,
    num_embeddings: int,
    features: int,
    *,
    w_init: Initializer = _NORMAL_0_02,
    param_dtype: Any = jnp.float32,
    name: str = "tied_embedding",
) -> Layer:
    """One table at both ends: ids -> table rows -> ``body`` -> scores against the table.

    The input embedding and the output projection share one ``[num_embeddings,
    features]`` table (Press & Wolf 2017): ``logits = body(table[ids]) @
    table.T``. It is one leaf in ``params``, so the optimizer sees one array
    and its gradient is the sum of both uses.

    Args:
        body: the layer between the two ends, ``[batch, T, features]`` to
            ``[batch, T, features]`` (e.g. positions and Transformer blocks).
        num_embeddings: the vocabulary size.
        features: the embedding width.
        w_init: initializer of the table (``normal(0.02)``, as GPT-2).
        param_dtype: the dtype in which the table is stored.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping integer ids ``[batch, T]`` to logits ``[batch, T,
        num_embeddings]``, with params ``{"embedding": [num_embeddings,
        features], "body": body's params}`` and ``body``'s state.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> net = fn.tied_embedding(fn.LayerNorm(), num_embeddings=10, features=4)
        >>> spec = jax.ShapeDtypeStruct((None, 7), jnp.int32)
        >>> out_shape, params, state = net.init(jax.random.key(0), spec)
        >>> out_shape, params["embedding"].shape
        ((None, 7, 10), (10, 4))
    """
    body_layer = as_layer(body)
    embed = Embedding(num_embeddings, features, w_init=w_init, param_dtype=param_dtype)

    def init(key: jax.Array, input_shape: InputShape) -> tuple[Shape, Params, State]:
        embed_key, body_key = jax.random.split(key)
        shape, embed_params, _ = init_child(f"{name}[embedding]", embed, embed_key, input_shape)
        out, body_params, body_state = init_child(f"{name}[body]", body_layer, body_key, shape)
        if not is_shape(out) or shape_of(out)[-1] != features:
            raise shape_error(
                name,
                f"the body must map [batch, T, {features}] to [batch, T, {features}] (its output "
                f"is scored against the {features}-wide table), got output shape {out}.",
            )
        out = shape_of(out)
        return (*out[:-1], num_embeddings), {"embedding": embed_params["embedding"],
                                             "body": body_params}, body_state  # fmt: skip

    def apply(
        params: Params,
        state: State,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        table = params["embedding"]
        h, _ = apply_child(
            f"{name}[embedding]", embed, {"embedding": table}, {}, x, key=None, train=train
        )
        h, state = apply_child(
            f"{name}[body]", body_layer, params["body"], state, h, key=key, train=train
        )
        logits = jnp.einsum("...d,vd->...v", h, table.astype(h.dtype))
        return logits, state

    return Layer(init, apply, name)


def TransformerLM(
    vocab_size: int,
    features: int,
    depth: int,
    num_heads: int,
    *,
    max_length: int | None = None,
    positions: str = "rotary",
    ffn_features: int | None = None,
    ffn: str = "gelu",
    dropout: float = 0.0,
    norm_first: bool = True,
    decode: bool = False,
    name: str = "TransformerLM",
) -> Layer:
    """A decoder-only Transformer language model, its embedding tied to its output.

    It is ``tied_embedding(serial(positional layer, repeat(
    TransformerDecoderBlock(...), depth), LayerNorm()), vocab_size,
    features)``: the blocks run as one ``lax.scan`` over stacked params, so
    compile time does not grow with ``depth``. (The final LayerNorm is there
    with ``norm_first=True`` only: post-norm blocks end normalized.)

    Args:
        vocab_size: the number of token ids.
        features: the model width.
        depth: the number of decoder blocks.
        num_heads: attention heads per block; must divide ``features``.
        max_length: the longest sequence, needed by ``positions="learned"``.
        positions: ``"rotary"`` (RoPE inside attention, the default),
            ``"learned"`` (:func:`PositionalEmbedding`) or ``"sinusoidal"``
            (:func:`SinusoidalPositions`).
        ffn_features: the feed-forward's hidden width; None means ``4 * features``.
        ffn: ``"gelu"`` or ``"swiglu"``, as in :func:`TransformerDecoderBlock`.
        dropout: the probability of dropping each sublayer's output.
        norm_first: pre-norm blocks and a final LayerNorm (True), or post-norm
            blocks (False).
        decode: if True, the decoding twin of the same model: same params,
            a key/value cache in ``state``; see :func:`funcnet.generate`.
        name: the name used in error paths and summaries.

    Returns:
        A layer mapping token ids ``[batch, T]`` to next-token logits
        ``[batch, T, vocab_size]``; position ``t``'s logits see tokens ``<= t``.

    Example:
        >>> import jax, jax.numpy as jnp, funcnet as fn
        >>> lm = fn.TransformerLM(vocab_size=11, features=8, depth=2, num_heads=2)
        >>> spec = jax.ShapeDtypeStruct((None, 6), jnp.int32)
        >>> out_shape, params, state = lm.init(jax.random.key(0), spec)
        >>> out_shape, params["body"][1]["attention"]["query"]["w"].shape  # stacked: depth 2
        ((None, 6, 11), (2, 8, 2, 4))
    """
    vocab_size = positive_int(name, "vocab_size", vocab_size)
    depth = positive_int(name, "depth", depth)
    if positions not in POSITIONS:
        raise ValueError(
            f"{name}: positions must be 'rotary', 'learned' or 'sinusoidal', got {positions!r}."
        )
    if positions == "learned" and max_length is None:
        raise ValueError(
            f"{name}: positions='learned' needs max_length (the size of the position table); "
            "pass e.g. max_length=256, or use positions='rotary' or 'sinusoidal'."
        )
    block = TransformerDecoderBlock(
        features, num_heads, ffn_features=ffn_features, ffn=ffn, dropout=dropout,
        norm_first=norm_first, rotary=positions == "rotary", decode=decode,
    )  # fmt: skip
    layers: list[Any] = []
    if positions == "learned":
        assert max_length is not None
        layers.append(PositionalEmbedding(max_length, decode=decode))
    elif positions == "sinusoidal":
        layers.append(SinusoidalPositions(decode=decode))
    else:
        layers.append(Lambda(lambda x: x, name="rotary_in_attention"))
    layers.append(repeat(block, depth, name="blocks"))
    if norm_first:
        layers.append(LayerNorm(epsilon=1e-5, name="final_norm"))
    return tied_embedding(serial(*layers), vocab_size, features, name=name)
