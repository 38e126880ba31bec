"""Registry cases for the Transformer blocks, positional encodings and the tied LM."""

import jax
import jax.numpy as jnp

import funcnet as fn
from tests.registry import Case

VOCAB = 7


def _with_padding_mask(key, shape, dtype):
    # The rank-2 entry of (x, mask) is the boolean padding mask; keep position 0 real.
    if len(shape) == 2:
        return jax.random.bernoulli(key, 0.7, shape).at[:, 0].set(True)
    return jax.random.normal(key, shape, dtype)


def random_ids(key, shape, dtype):
    return jax.random.randint(key, shape, 0, VOCAB, dtype)


_IDS = jax.ShapeDtypeStruct((None, 4), jnp.int32)

CASES = [
    Case("TransformerEncoderBlock", lambda: fn.TransformerEncoderBlock(8, 2), (None, 4, 8)),
    Case(
        "TransformerEncoderBlock",
        lambda: fn.TransformerEncoderBlock(8, 2, ffn="swiglu", norm_first=False),
        ((None, 4, 8), (None, 4)),
        make_input=_with_padding_mask,
        float_dtypes=False,  # the mask comes out too, boolean; the unmasked case covers dtypes
        id="postnorm-swiglu-mask",
    ),
    Case(
        "TransformerDecoderBlock",
        lambda: fn.TransformerDecoderBlock(8, 2, rotary=True, ffn_features=12),
        (None, 4, 8),
        id="rotary",
    ),
    Case("PositionalEmbedding", lambda: fn.PositionalEmbedding(6), (None, 4, 8)),
    Case("SinusoidalPositions", lambda: fn.SinusoidalPositions(), (None, 4, 8)),
    Case(
        "tied_embedding",
        lambda: fn.tied_embedding(fn.LayerNorm(), VOCAB, 4),
        _IDS,
        make_input=random_ids,
        input_dtype=jnp.int32,
        float_dtypes=False,
    ),
    Case(
        "TransformerLM",
        lambda: fn.TransformerLM(VOCAB, 8, 2, 2, positions="learned", max_length=6),
        _IDS,
        make_input=random_ids,
        input_dtype=jnp.int32,
        float_dtypes=False,
        # Its parts pass the float64 check in their own cases; the whole model misses
        # it by ~5e-5 relative at check_grads' default eps (finite-difference
        # truncation: it passes at eps=1e-6, tests/test_transformer.py).
        grad_check=False,
    ),
]
